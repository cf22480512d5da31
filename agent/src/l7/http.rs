//! HTTP/1.x: method, path grouped by its first N segments (query cut), status,
//! and `X-Request-Id` (or a W3C `traceparent` trace id) as the trace id.

use vigil_model::{L7Protocol, ResponseStatus, SmolStr, SmolStrBuilder};

use super::{text, ParseOptions, Parsed};

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// Whether `req` starts with an HTTP/1.x request line.
pub fn looks_like(req: &[u8]) -> bool {
    METHODS
        .iter()
        .any(|m| req.len() > m.len() && req.starts_with(m.as_bytes()) && req[m.len()] == b' ')
}

/// `/api/v1/users/42?x=1` with 2 segments → `/api/v1`; numeric segments
/// within the kept ones become `*`.
pub fn group_path(path: &str, segments: usize) -> SmolStr {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut grouped = SmolStrBuilder::new();
    for segment in path
        .split('/')
        .filter(|s| !s.is_empty())
        .take(segments.max(1))
    {
        grouped.push('/');
        grouped.push_str(if segment.bytes().all(|c| c.is_ascii_digit()) {
            "*"
        } else {
            segment
        });
    }
    let grouped = grouped.finish();
    if grouped.is_empty() {
        SmolStr::new_static("/")
    } else {
        grouped
    }
}

/// Parses the request line and headers in `req`, the status line in `resp`.
pub fn parse(req: &[u8], resp: &[u8], options: &ParseOptions) -> Option<Parsed> {
    let request = text(req);
    let mut lines = request.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?;
    let target = request_line.next().unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let mut trace_id = "";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("x-request-id") {
            trace_id = value.trim();
        } else if name.eq_ignore_ascii_case("traceparent") && trace_id.is_empty() {
            trace_id = value.trim().split('-').nth(1).unwrap_or_default();
        }
    }
    let resp_text = text(resp);
    let code: Option<i32> = resp_text
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|code| code.trim().parse().ok());
    let status = match code {
        Some(c) if c >= 500 => ResponseStatus::ServerError,
        Some(c) if c >= 400 => ResponseStatus::ClientError,
        Some(_) => ResponseStatus::Ok,
        None => ResponseStatus::Unknown,
    };
    Some(Parsed {
        protocol: L7Protocol::Http,
        request_type: SmolStr::new(method),
        resource: SmolStr::new(path),
        endpoint: group_path(path, options.http_path_segments),
        status,
        code,
        trace_id: SmolStr::new(trace_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_status() {
        let req = b"GET /api/v1/orders/42?token=secret HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123\r\n\r\n";
        assert!(looks_like(req));
        let parsed =
            parse(req, b"HTTP/1.1 404 Not Found\r\n", &ParseOptions::default()).expect("http");
        assert_eq!(parsed.request_type, "GET");
        assert_eq!(parsed.resource, "/api/v1/orders/42");
        assert_eq!(parsed.endpoint, "/api/v1");
        assert_eq!(parsed.code, Some(404));
        assert_eq!(parsed.status, ResponseStatus::ClientError);
        assert_eq!(parsed.trace_id, "abc-123");
        assert!(!format!("{parsed:?}").contains("secret"));
    }

    #[test]
    fn grouping() {
        assert_eq!(group_path("/", 2), "/");
        assert_eq!(group_path("/users/42/orders", 3), "/users/*/orders");
        assert_eq!(group_path("/a/b/c", 1), "/a");
    }

    #[test]
    fn server_errors_and_traceparent() {
        let req = b"POST /pay HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
        let parsed = parse(req, b"HTTP/1.0 503 Busy\r\n", &ParseOptions::default()).expect("http");
        assert_eq!(parsed.status, ResponseStatus::ServerError);
        assert_eq!(parsed.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(!looks_like(b"GETX / HTTP/1.1"));
    }
}
