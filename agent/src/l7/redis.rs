//! Redis RESP2/RESP3: command name and key pattern from the request (values
//! are never kept), outcome from the reply type. A pipeline gives one entry per
//! command, each matched to its reply when that reply is in the first chunk.

use vigil_model::{L7Protocol, ResponseStatus};

use super::{ParseOptions, Parsed};

/// Whether `req` starts like a RESP command (`*<n>\r\n$`).
pub fn looks_like(req: &[u8]) -> bool {
    req.len() >= 4 && req[0] == b'*' && req[1].is_ascii_digit() && {
        let end = req.iter().position(|b| *b == b'\r');
        end.is_some_and(|e| req.get(e + 2).is_none_or(|b| *b == b'$'))
    }
}

/// Commands whose first argument is not a key.
const KEYLESS: &[&str] = &[
    "PING",
    "ECHO",
    "DEBUG",
    "INFO",
    "COMMAND",
    "CLIENT",
    "CONFIG",
    "SELECT",
    "AUTH",
    "HELLO",
    "FLUSHALL",
    "FLUSHDB",
    "DBSIZE",
    "TIME",
    "MULTI",
    "EXEC",
    "DISCARD",
    "SCRIPT",
    "EVAL",
    "EVALSHA",
    "SLOWLOG",
    "MEMORY",
    "LATENCY",
    "CLUSTER",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "PUBLISH",
    "SCAN",
    "QUIT",
    "RESET",
    "ROLE",
    "SAVE",
    "BGSAVE",
    "LASTSAVE",
    "SHUTDOWN",
    "WAIT",
    "FUNCTION",
];

fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

fn number(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// One command: its arguments as far as they are in the buffer (the last may be cut).
fn command(buf: &[u8], at: usize) -> Option<(Vec<Vec<u8>>, usize, bool)> {
    let (head, mut pos) = line(buf, at)?;
    if head.first() != Some(&b'*') {
        return None;
    }
    let count = number(&head[1..])?;
    let mut args = Vec::new();
    for _ in 0..count.clamp(0, 4096) {
        let Some((len_line, data)) = line(buf, pos) else {
            return Some((args, buf.len(), false));
        };
        if len_line.first() != Some(&b'$') {
            return None;
        }
        let len = usize::try_from(number(&len_line[1..])?).ok()?;
        let end = data + len;
        if end + 2 > buf.len() {
            if args.len() < 2 {
                args.push(buf[data.min(buf.len())..end.min(buf.len())].to_vec());
            }
            return Some((args, buf.len(), false));
        }
        if args.len() < 2 {
            args.push(buf[data..end].to_vec());
        }
        pos = end + 2;
    }
    Some((args, pos, true))
}

/// Skips one reply starting at `at`; its status and where the next begins.
fn reply(buf: &[u8], at: usize) -> Option<(ResponseStatus, usize)> {
    let (head, next) = line(buf, at)?;
    let kind = *head.first()?;
    match kind {
        b'-' | b'!' => {
            let text = String::from_utf8_lossy(&head[1..]).to_ascii_uppercase();
            let server = [
                "LOADING",
                "BUSY",
                "OOM",
                "MASTERDOWN",
                "CLUSTERDOWN",
                "TRYAGAIN",
                "MISCONF",
            ]
            .iter()
            .any(|prefix| text.starts_with(prefix));
            let status = if server {
                ResponseStatus::ServerError
            } else {
                ResponseStatus::ClientError
            };
            let next = if kind == b'!' {
                next + usize::try_from(number(&head[1..]).unwrap_or(0)).unwrap_or(0) + 2
            } else {
                next
            };
            Some((status, next))
        }
        b'$' | b'=' | b'(' => {
            let len = number(&head[1..])?;
            let skip = if len < 0 || kind == b'(' {
                0
            } else {
                usize::try_from(len).ok()? + 2
            };
            Some((ResponseStatus::Ok, next + skip))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = number(&head[1..])?;
            let items = if kind == b'%' || kind == b'|' {
                n * 2
            } else {
                n
            };
            let mut pos = next;
            for _ in 0..items.max(0) {
                pos = reply(buf, pos)?.1;
            }
            Some((ResponseStatus::Ok, pos))
        }
        _ => Some((ResponseStatus::Ok, next)),
    }
}

/// `user:123:profile` → `user:*:profile`: numeric and id-like segments become `*`.
pub fn key_pattern(key: &[u8]) -> String {
    let text = String::from_utf8_lossy(key);
    let mut out = String::new();
    let mut segment = String::new();
    let flush = |segment: &mut String, out: &mut String| {
        let idlike = !segment.is_empty()
            && (segment.chars().all(|c| c.is_ascii_digit())
                || (segment.len() >= 8
                    && segment.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
                    && segment.chars().any(|c| c.is_ascii_digit())));
        out.push_str(if idlike { "*" } else { segment });
        segment.clear();
    };
    for c in text.chars() {
        if matches!(c, ':' | '.' | '/' | '_' | '-' | '{' | '}' | '|' | '#') {
            flush(&mut segment, &mut out);
            out.push(c);
        } else {
            segment.push(c);
        }
    }
    flush(&mut segment, &mut out);
    out
}

/// Every command in `req`, paired with the replies found in `resp`.
pub fn parse(req: &[u8], resp: &[u8], options: &ParseOptions) -> Vec<Parsed> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut reply_pos = Some(0);
    while pos < req.len() {
        let Some((args, next, complete)) = command(req, pos) else {
            break;
        };
        let Some(name) = args.first() else {
            break;
        };
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        let key = args
            .get(1)
            .filter(|_| !KEYLESS.contains(&name.as_str()))
            .map(|key| {
                if options.obfuscate {
                    key_pattern(key)
                } else {
                    String::from_utf8_lossy(key).into_owned()
                }
            });
        let (status, after) = match reply_pos.and_then(|at| reply(resp, at)) {
            Some((status, after)) => (status, Some(after)),
            None => (ResponseStatus::Ok, None),
        };
        reply_pos = after.filter(|a| *a < resp.len());
        out.push(Parsed {
            protocol: L7Protocol::Redis,
            request_type: name.clone(),
            resource: key.map_or_else(|| name.clone(), |key| format!("{name} {key}")),
            endpoint: name,
            status,
            code: None,
            trace_id: String::new(),
        });
        if !complete || out.len() >= 256 {
            break;
        }
        pos = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(args: &[&str]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        out
    }

    #[test]
    fn one_command() {
        let req = resp(&["DEBUG", "SLEEP", "0.2"]);
        assert!(looks_like(&req));
        let parsed = parse(&req, b"+OK\r\n", &ParseOptions::default());
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].request_type, "DEBUG");
        assert_eq!(parsed[0].resource, "DEBUG");
        assert_eq!(parsed[0].status, ResponseStatus::Ok);
    }

    #[test]
    fn values_are_dropped_and_keys_grouped() {
        let req = resp(&["set", "user:1234:name", "secret-value"]);
        let parsed = parse(&req, b"+OK\r\n", &ParseOptions::default());
        assert_eq!(parsed[0].resource, "SET user:*:name");
        assert!(!format!("{parsed:?}").contains("secret"));
    }

    #[test]
    fn pipeline_gives_one_entry_per_command_with_its_reply() {
        let mut req = resp(&["GET", "a:1"]);
        req.extend(resp(&["INCR", "b"]));
        req.extend(resp(&["HGETALL", "h:9"]));
        let reply = b"$3\r\nxyz\r\n-WRONGTYPE Operation\r\n*2\r\n$1\r\nk\r\n$1\r\nv\r\n";
        let parsed = parse(&req, reply, &ParseOptions::default());
        let names: Vec<_> = parsed.iter().map(|p| p.request_type.as_str()).collect();
        assert_eq!(names, ["GET", "INCR", "HGETALL"]);
        let statuses: Vec<_> = parsed.iter().map(|p| p.status).collect();
        assert_eq!(
            statuses,
            [
                ResponseStatus::Ok,
                ResponseStatus::ClientError,
                ResponseStatus::Ok
            ]
        );
    }

    #[test]
    fn resp3_replies_and_truncated_requests() {
        let req = resp(&["HGETALL", "session:ab12cd34ef56"]);
        let parsed = parse(
            &req[..req.len() - 4],
            b"%1\r\n+k\r\n:1\r\n",
            &ParseOptions::default(),
        );
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].resource, "HGETALL session:*");
        let busy = parse(
            &resp(&["EVAL", "x", "0"]),
            b"-BUSY script\r\n",
            &ParseOptions::default(),
        );
        assert_eq!(busy[0].status, ResponseStatus::ServerError);
    }

    #[test]
    fn not_redis() {
        assert!(!looks_like(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like(b"\x05\x00\x00\x00\x03SELECT"));
    }
}
