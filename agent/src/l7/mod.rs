//! L7 parsers: one request's first bytes and its response's first bytes in,
//! the request's shape and outcome out. Payload values never leave the parser
//! when obfuscation is on (the default): SQL literals become `?`, Redis values
//! are dropped, HTTP query strings are cut.

pub mod http;
pub mod mysql;
pub mod redis;
pub mod sql;

use std::borrow::Cow;

use vigil_model::{L7Protocol, ResponseStatus, SmolStr};

/// `bytes` as text, borrowed when they are valid UTF-8 (the common case,
/// checked with `str::from_utf8`'s fast path), with U+FFFD for invalid bytes
/// otherwise.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// What a parser made of one request and its response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Protocol.
    pub protocol: L7Protocol,
    /// HTTP method, SQL verb or Redis command.
    pub request_type: SmolStr,
    /// Normalised resource.
    pub resource: SmolStr,
    /// Endpoint (grouped path, statement shape, command).
    pub endpoint: SmolStr,
    /// Outcome.
    pub status: ResponseStatus,
    /// Protocol code (HTTP status, MySQL error number).
    pub code: Option<i32>,
    /// Trace or request id carried by the request; empty when none.
    pub trace_id: SmolStr,
}

/// Which protocols to parse and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// Parse HTTP/1.x.
    pub http: bool,
    /// Parse MySQL.
    pub mysql: bool,
    /// Parse Redis.
    pub redis: bool,
    /// Replace SQL literals with `?` and drop Redis values.
    pub obfuscate: bool,
    /// HTTP paths are grouped by this many leading segments.
    pub http_path_segments: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            http: true,
            mysql: true,
            redis: true,
            obfuscate: true,
            http_path_segments: 2,
        }
    }
}

/// Parses request/response pairs, keeping per-connection state (prepared statements).
#[derive(Debug, Default)]
pub struct Parser {
    options: ParseOptions,
    statements: mysql::Statements,
    /// Where resources and shapes are built before they become [`SmolStr`]s,
    /// reused across events (most fit inline, so an event allocates nothing).
    scratch: String,
}

impl Parser {
    /// A parser with these options.
    pub fn new(options: ParseOptions) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }

    /// Parses one pair seen on connection `conn` into `out`, detecting the
    /// protocol from the bytes. A Redis pipeline yields one entry per command;
    /// an unknown protocol (or a disabled one) none. `out` is the caller's, so
    /// a loop over many events reuses one buffer.
    pub fn parse_into(
        &mut self,
        conn: mysql::ConnKey,
        req: &[u8],
        resp: &[u8],
        out: &mut Vec<Parsed>,
    ) {
        let options = &self.options;
        let scratch = &mut self.scratch;
        // Redis first: its test is the cheapest (the first byte is `*`, never
        // an HTTP method's), and it is the busiest protocol.
        if options.redis && redis::looks_like(req) {
            redis::parse_into(req, resp, options, scratch, out);
        } else if options.http && http::looks_like(req) {
            out.extend(http::parse(req, resp, options));
        } else if options.mysql && mysql::looks_like(req) {
            out.extend(mysql::parse(
                req,
                resp,
                options,
                conn,
                &mut self.statements,
                scratch,
            ));
        }
    }
}
