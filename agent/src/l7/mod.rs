//! L7 parsers: one request's first bytes and its response's first bytes in,
//! the request's shape and outcome out. Payload values never leave the parser
//! when obfuscation is on (the default): SQL literals become `?`, Redis values
//! are dropped, HTTP query strings are cut.

pub mod http;
pub mod mysql;
pub mod redis;
pub mod sql;

use vigil_model::{L7Protocol, ResponseStatus};

/// What a parser made of one request and its response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Protocol.
    pub protocol: L7Protocol,
    /// HTTP method, SQL verb or Redis command.
    pub request_type: String,
    /// Normalised resource.
    pub resource: String,
    /// Endpoint (grouped path, statement shape, command).
    pub endpoint: String,
    /// Outcome.
    pub status: ResponseStatus,
    /// Protocol code (HTTP status, MySQL error number).
    pub code: Option<i32>,
    /// Trace or request id carried by the request; empty when none.
    pub trace_id: String,
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
}

impl Parser {
    /// A parser with these options.
    pub fn new(options: ParseOptions) -> Self {
        Self {
            options,
            statements: mysql::Statements::default(),
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
        if options.http && http::looks_like(req) {
            out.extend(http::parse(req, resp, options));
        } else if options.redis && redis::looks_like(req) {
            redis::parse_into(req, resp, options, out);
        } else if options.mysql && mysql::looks_like(req) {
            out.extend(mysql::parse(req, resp, options, conn, &mut self.statements));
        }
    }
}
