//! MySQL / MariaDB client protocol: COM_QUERY (statement shape), prepared
//! statements (COM_STMT_PREPARE's text remembered per connection and statement
//! id, COM_STMT_EXECUTE named by it), error packets (status and error number).

use std::collections::HashMap;
use std::net::IpAddr;

use vigil_model::{format_smolstr, L7Protocol, ResponseStatus, SmolStr};

use super::{sql, text, ParseOptions, Parsed};

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_PING: u8 = 0x0e;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;
const COM_STMT_RESET: u8 = 0x1a;
const COM_RESET_CONNECTION: u8 = 0x1f;

/// Error numbers that mean the server, not the statement, failed.
const SERVER_ERRORS: &[i32] = &[
    1021, 1037, 1038, 1040, 1041, 1053, 1205, 1213, 1317, 1969, 3024,
];

/// A connection: server pid and client address.
pub type ConnKey = (u32, IpAddr, u16);

/// Prepared statements seen per connection, bounded.
#[derive(Debug, Default)]
pub struct Statements {
    by_id: HashMap<(ConnKey, u32), (SmolStr, SmolStr)>,
}

impl Statements {
    const MAX: usize = 65_536;

    fn remember(&mut self, key: (ConnKey, u32), verb: SmolStr, shape: SmolStr) {
        if self.by_id.len() >= Self::MAX {
            self.by_id.clear();
        }
        self.by_id.insert(key, (verb, shape));
    }
}

fn packets(buf: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let header = buf.get(pos..pos + 4)?;
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        let seq = header[3];
        let start = pos + 4;
        let end = (start + len).min(buf.len());
        pos = start + len;
        Some((seq, &buf[start..end]))
    })
}

/// Whether `req` starts like a client command packet.
pub fn looks_like(req: &[u8]) -> bool {
    let Some((seq, payload)) = packets(req).next() else {
        return false;
    };
    let len = usize::from(req[0]) | usize::from(req[1]) << 8 | usize::from(req[2]) << 16;
    if seq != 0 || len == 0 || payload.is_empty() {
        return false;
    }
    match payload[0] {
        COM_QUERY | COM_STMT_PREPARE => payload
            .get(1)
            .is_some_and(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()),
        COM_STMT_EXECUTE | COM_STMT_CLOSE | COM_STMT_RESET | COM_STMT_SEND_LONG_DATA => len >= 5,
        COM_PING | COM_QUIT | COM_RESET_CONNECTION => len == 1,
        COM_INIT_DB => payload.len() > 1,
        _ => false,
    }
}

/// The reply's status, error number and (for a prepare) statement id.
fn reply(resp: &[u8]) -> (ResponseStatus, Option<i32>, Option<u32>) {
    let Some((_, payload)) = packets(resp).next() else {
        return (ResponseStatus::Unknown, None, None);
    };
    match payload.first() {
        Some(0xff) if payload.len() >= 3 => {
            let code = i32::from(u16::from_le_bytes([payload[1], payload[2]]));
            let status = if SERVER_ERRORS.contains(&code) || code >= 2000 {
                ResponseStatus::ServerError
            } else {
                ResponseStatus::ClientError
            };
            (status, Some(code), None)
        }
        Some(0x00) if payload.len() >= 5 => (
            ResponseStatus::Ok,
            None,
            Some(u32::from_le_bytes([
                payload[1], payload[2], payload[3], payload[4],
            ])),
        ),
        Some(_) => (ResponseStatus::Ok, None, None),
        None => (ResponseStatus::Unknown, None, None),
    }
}

/// Parses the first command in `req` that expects a reply (commands without
/// one, such as COM_STMT_CLOSE, are skipped), with its reply. Shapes are
/// built in `scratch`.
pub fn parse(
    req: &[u8],
    resp: &[u8],
    options: &ParseOptions,
    conn: ConnKey,
    statements: &mut Statements,
    scratch: &mut String,
) -> Option<Parsed> {
    let (seq, payload) = packets(req).find(|(seq, payload)| {
        *seq == 0
            && !matches!(
                payload.first(),
                Some(&COM_STMT_CLOSE) | Some(&COM_STMT_SEND_LONG_DATA) | Some(&COM_QUIT) | None
            )
    })?;
    debug_assert_eq!(seq, 0);
    let (status, code, stmt_id) = reply(resp);
    let mut statement = |body: &[u8]| {
        let sql_text = text(body);
        sql::shape_into(&sql_text, options.obfuscate, scratch);
        (sql::verb(&sql_text), SmolStr::new(&*scratch))
    };
    let fixed = |verb: &'static str, shape: &'static str| {
        (SmolStr::new_static(verb), SmolStr::new_static(shape))
    };
    let (request_type, shape) = match payload[0] {
        COM_QUERY => statement(&payload[1..]),
        COM_STMT_PREPARE => {
            let (verb, shape) = statement(&payload[1..]);
            if let (Some(id), ResponseStatus::Ok) = (stmt_id, status) {
                statements.remember((conn, id), verb, shape.clone());
            }
            (SmolStr::new_static("PREPARE"), shape)
        }
        COM_STMT_EXECUTE if payload.len() >= 5 => {
            let id = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]);
            match statements.by_id.get(&(conn, id)) {
                Some((verb, shape)) => (verb.clone(), shape.clone()),
                None => (
                    SmolStr::new_static("EXECUTE"),
                    format_smolstr!("EXECUTE statement {id}"),
                ),
            }
        }
        COM_PING => fixed("PING", "PING"),
        COM_INIT_DB => fixed("USE", "USE ?"),
        COM_STMT_RESET => fixed("RESET", "STMT RESET"),
        COM_RESET_CONNECTION => fixed("RESET", "RESET CONNECTION"),
        _ => return None,
    };
    Some(Parsed {
        protocol: L7Protocol::Mysql,
        request_type,
        resource: shape.clone(),
        endpoint: shape,
        status,
        code,
        trace_id: SmolStr::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, seq];
        out.extend_from_slice(payload);
        out
    }

    fn conn() -> ConnKey {
        (1, "127.0.0.1".parse().expect("ip"), 40000)
    }

    #[test]
    fn query_shape_and_ok() {
        let req = packet(0, b"\x03SELECT SLEEP(0.3)");
        assert!(looks_like(&req));
        let reply = packet(1, b"\x01");
        let parsed = parse(
            &req,
            &reply,
            &ParseOptions::default(),
            conn(),
            &mut Statements::default(),
            &mut String::new(),
        )
        .expect("parsed");
        assert_eq!(parsed.request_type, "SELECT");
        assert_eq!(parsed.endpoint, "SELECT SLEEP(?)");
        assert_eq!(parsed.status, ResponseStatus::Ok);
    }

    #[test]
    fn error_packet_gives_code_and_status() {
        let req = packet(0, b"\x03SELEC 1");
        let reply = packet(1, b"\xff\x28\x04#42000You have an error");
        let parsed = parse(
            &req,
            &reply,
            &ParseOptions::default(),
            conn(),
            &mut Statements::default(),
            &mut String::new(),
        )
        .expect("parsed");
        assert_eq!(parsed.code, Some(1064));
        assert_eq!(parsed.status, ResponseStatus::ClientError);
        let deadlock = packet(1, b"\xff\xbd\x04#40001Deadlock");
        let parsed = parse(
            &req,
            &deadlock,
            &ParseOptions::default(),
            conn(),
            &mut Statements::default(),
            &mut String::new(),
        )
        .expect("parsed");
        assert_eq!(parsed.status, ResponseStatus::ServerError);
    }

    #[test]
    fn prepared_statements_are_named_by_their_text() {
        let mut statements = Statements::default();
        let prepare = packet(0, b"\x16UPDATE t SET a = ? WHERE id = 7");
        let ok = packet(1, b"\x00\x05\x00\x00\x00\x00\x00\x01\x00\x00\x00");
        let parsed = parse(
            &prepare,
            &ok,
            &ParseOptions::default(),
            conn(),
            &mut statements,
            &mut String::new(),
        )
        .expect("prepare");
        assert_eq!(parsed.request_type, "PREPARE");
        let mut execute = packet(0, b"\x17\x05\x00\x00\x00\x00\x01\x00\x00\x00");
        // A COM_STMT_CLOSE (no reply) in front of it is skipped.
        let mut with_close = packet(0, b"\x19\x04\x00\x00\x00");
        with_close.append(&mut execute);
        assert!(looks_like(&with_close));
        let parsed = parse(
            &with_close,
            &packet(1, b"\x00\x00\x00"),
            &ParseOptions::default(),
            conn(),
            &mut statements,
            &mut String::new(),
        )
        .expect("execute");
        assert_eq!(parsed.request_type, "UPDATE");
        assert_eq!(parsed.endpoint, "UPDATE t SET a = ? WHERE id = ?");
    }

    #[test]
    fn handshake_packets_are_not_commands() {
        assert!(!looks_like(&packet(1, b"\x85\xa6\xff\x01")));
        assert!(!looks_like(b"*1\r\n$4\r\nPING\r\n"));
    }
}
