//! Redis RESP2/RESP3: command name and key pattern from the request (values
//! are never kept), outcome from the reply type. A pipeline gives one entry per
//! command, each matched to its reply when that reply is in the first chunk.

use vigil_model::{L7Protocol, ResponseStatus, SmolStr, StrExt};

use super::{text, ParseOptions, Parsed};

/// Whether `req` starts like a RESP command (`*<n>\r\n$`).
pub fn looks_like(req: &[u8]) -> bool {
    req.len() >= 4 && req[0] == b'*' && req[1].is_ascii_digit() && {
        let end = req.iter().position(|b| *b == b'\r');
        end.is_some_and(|e| req.get(e + 2).is_none_or(|b| *b == b'$'))
    }
}

/// Whether `command`'s first argument is not a key (a `match`: checked for
/// every command, so no scan of a list).
fn is_keyless(command: &str) -> bool {
    matches!(
        command,
        "PING"
            | "ECHO"
            | "DEBUG"
            | "INFO"
            | "COMMAND"
            | "CLIENT"
            | "CONFIG"
            | "SELECT"
            | "AUTH"
            | "HELLO"
            | "FLUSHALL"
            | "FLUSHDB"
            | "DBSIZE"
            | "TIME"
            | "MULTI"
            | "EXEC"
            | "DISCARD"
            | "SCRIPT"
            | "EVAL"
            | "EVALSHA"
            | "SLOWLOG"
            | "MEMORY"
            | "LATENCY"
            | "CLUSTER"
            | "SUBSCRIBE"
            | "PSUBSCRIBE"
            | "PUBLISH"
            | "SCAN"
            | "QUIT"
            | "RESET"
            | "ROLE"
            | "SAVE"
            | "BGSAVE"
            | "LASTSAVE"
            | "SHUTDOWN"
            | "WAIT"
            | "FUNCTION"
    )
}

fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let mut from = 0;
    loop {
        let cr = from + rest.get(from..)?.iter().position(|b| *b == b'\r')?;
        if rest.get(cr + 1) == Some(&b'\n') {
            return Some((&rest[..cr], at + cr + 2));
        }
        from = cr + 1;
    }
}

/// A RESP length or count: an optional `-`, then up to 18 decimal digits.
fn number(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    for digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(digit - b'0');
    }
    Some(if negative { -n } else { n })
}

/// The first two arguments of one command (its name and, usually, its key),
/// as far as they are in the buffer (the last may be cut), borrowed from it.
struct Command<'a> {
    name: &'a [u8],
    key: Option<&'a [u8]>,
    /// Where the next command starts.
    next: usize,
    /// Whether the whole command was in the buffer.
    complete: bool,
}

fn finished(args: [Option<&[u8]>; 2], next: usize, complete: bool) -> Option<Command<'_>> {
    Some(Command {
        name: args[0]?,
        key: args[1],
        next,
        complete,
    })
}

fn command(buf: &[u8], at: usize) -> Option<Command<'_>> {
    let (head, mut pos) = line(buf, at)?;
    if head.first() != Some(&b'*') {
        return None;
    }
    let count = number(&head[1..])?;
    let mut args: [Option<&[u8]>; 2] = [None, None];
    let mut seen = 0;
    for _ in 0..count.clamp(0, 4096) {
        let Some((len_line, data)) = line(buf, pos) else {
            return finished(args, buf.len(), false);
        };
        if len_line.first() != Some(&b'$') {
            return None;
        }
        let len = usize::try_from(number(&len_line[1..])?).ok()?;
        let end = data + len;
        if end + 2 > buf.len() {
            if seen < 2 {
                args[seen] = Some(&buf[data.min(buf.len())..end.min(buf.len())]);
            }
            return finished(args, buf.len(), false);
        }
        if seen < 2 {
            args[seen] = Some(&buf[data..end]);
            seen += 1;
        }
        pos = end + 2;
    }
    finished(args, pos, true)
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

/// `user:123:profile` → `user:*:profile`: numeric and id-like segments become
/// `*`. Appended to `out`.
pub fn push_key_pattern(key: &[u8], out: &mut String) {
    fn id_like(segment: &[u8]) -> bool {
        !segment.is_empty()
            && (segment.iter().all(u8::is_ascii_digit)
                || (segment.len() >= 8
                    && segment.iter().all(u8::is_ascii_hexdigit)
                    && segment.iter().any(u8::is_ascii_digit)))
    }
    let is_separator = |c: u8| {
        matches!(
            c,
            b':' | b'.' | b'/' | b'_' | b'-' | b'{' | b'}' | b'|' | b'#'
        )
    };
    // One UTF-8 check for the whole key. Separators are ASCII, so cutting
    // there never splits a character.
    let key = text(key);
    // Only segments with a digit change: most keys of a kind have none.
    if !key.bytes().any(|c| c.is_ascii_digit()) {
        out.push_str(&key);
        return;
    }
    let push = |segment: &str, out: &mut String| {
        out.push_str(if id_like(segment.as_bytes()) {
            "*"
        } else {
            segment
        });
    };
    let mut start = 0;
    for (i, c) in key.bytes().enumerate() {
        if is_separator(c) {
            push(&key[start..i], out);
            out.push(char::from(c));
            start = i + 1;
        }
    }
    push(&key[start..], out);
}

/// A command's name in upper case (inline: names are short). Clients mostly
/// send it upper case already, and then it is only copied.
fn command_name(name: &[u8]) -> SmolStr {
    let name = text(name);
    if name.bytes().any(|c| c.is_ascii_lowercase()) {
        name.to_ascii_uppercase_smolstr()
    } else {
        SmolStr::new(name)
    }
}

/// Every command in `req`, paired with the replies found in `resp`, appended
/// to `out`. Resources are built in `scratch`.
pub fn parse_into(
    req: &[u8],
    resp: &[u8],
    options: &ParseOptions,
    scratch: &mut String,
    out: &mut Vec<Parsed>,
) {
    let first = out.len();
    let mut pos = 0;
    let mut reply_pos = Some(0);
    while pos < req.len() {
        let Some(Command {
            name,
            key,
            next,
            complete,
        }) = command(req, pos)
        else {
            break;
        };
        let name = command_name(name);
        let key = key.filter(|_| !is_keyless(&name));
        let resource = match key {
            Some(key) => {
                // `NAME key-pattern`
                scratch.clear();
                scratch.push_str(&name);
                scratch.push(' ');
                if options.obfuscate {
                    push_key_pattern(key, scratch);
                } else {
                    scratch.push_str(&text(key));
                }
                SmolStr::new(&*scratch)
            }
            None => name.clone(),
        };
        let (status, after) = match reply_pos.and_then(|at| reply(resp, at)) {
            Some((status, after)) => (status, Some(after)),
            None => (ResponseStatus::Ok, None),
        };
        reply_pos = after.filter(|a| *a < resp.len());
        out.push(Parsed {
            protocol: L7Protocol::Redis,
            request_type: name.clone(),
            resource,
            endpoint: name,
            status,
            code: None,
            trace_id: SmolStr::default(),
        });
        if !complete || out.len() - first >= 256 {
            break;
        }
        pos = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(req: &[u8], resp: &[u8], options: &ParseOptions) -> Vec<Parsed> {
        let mut out = Vec::new();
        parse_into(req, resp, options, &mut String::new(), &mut out);
        out
    }

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
    fn lengths_and_counts() {
        assert_eq!(number(b"16"), Some(16));
        assert_eq!(number(b"-1"), Some(-1));
        assert_eq!(number(b"0"), Some(0));
        assert_eq!(number(b""), None);
        assert_eq!(number(b"-"), None);
        assert_eq!(number(b"1x"), None);
        assert_eq!(number(b"9999999999999999999"), None);
    }

    #[test]
    fn keys_without_digits_are_kept_and_keyless_commands_have_none() {
        let parsed = parse(
            &resp(&["GET", "key:__rand_int__"]),
            b"$-1\r\n",
            &ParseOptions::default(),
        );
        assert_eq!(parsed[0].resource, "GET key:__rand_int__");
        let parsed = parse(
            &resp(&["PUBLISH", "news:1", "hello"]),
            b":1\r\n",
            &ParseOptions::default(),
        );
        assert_eq!(parsed[0].resource, "PUBLISH");
        let parsed = parse(
            &resp(&["hgetall", "cart:7f3a9c2e41:items"]),
            b"*0\r\n",
            &ParseOptions::default(),
        );
        assert_eq!(parsed[0].resource, "HGETALL cart:*:items");
    }

    #[test]
    fn not_redis() {
        assert!(!looks_like(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like(b"\x05\x00\x00\x00\x03SELECT"));
    }
}
