//! The kernel ↔ userspace records of `ebpf/vigil.h`, parsed without `unsafe`
//! (fixed offsets, little-endian). Sizes are asserted against the C header's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `VIGIL_WIRE_VERSION` in `ebpf/vigil.h`.
pub const WIRE_VERSION: u32 = 3;
/// `sizeof(struct vigil_l7_event)`: the longest record.
pub const L7_EVENT_SIZE: usize = 736;
/// `L7_HEADER_SIZE`: where a record's request bytes start.
pub const L7_HEADER_SIZE: usize = 96;
/// `REQ_CAP`: request bytes the kernel keeps.
pub const REQ_CAP: usize = 256;
/// `RESP_CAP`: response bytes the kernel keeps.
pub const RESP_CAP: usize = 128;
/// `sizeof(struct vigil_sample_key)`.
pub const SAMPLE_KEY_SIZE: usize = 28;
/// `sizeof(struct vigil_tcp_key)`.
pub const TCP_KEY_SIZE: usize = 24;

const AF_INET: u16 = 2;

/// One request with the first chunk of its response, as the kernel paired
/// them. Borrows the ring-buffer record: nothing is copied to read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L7Event<'a> {
    /// CLOCK_MONOTONIC ns when the request was read.
    pub req_ts_ns: u64,
    /// CLOCK_MONOTONIC ns when the response started.
    pub resp_ts_ns: u64,
    /// Server process (tgid).
    pub pid: u32,
    /// Server thread.
    pub tid: u32,
    /// Server address.
    pub local: (IpAddr, u16),
    /// Client address.
    pub remote: (IpAddr, u16),
    /// Total request bytes seen.
    pub req_total: u32,
    /// Size of the first response write.
    pub resp_total: u32,
    /// Server `comm`, its bytes up to the NUL (text only when a server is
    /// first named: most events come from a server already named).
    pub comm: &'a [u8],
    /// The first request bytes.
    pub req: &'a [u8],
    /// The first response bytes.
    pub resp: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn addr(family: u16, raw: &[u8]) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&raw[..16]);
        let v6 = Ipv6Addr::from(a);
        v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
    }
}

/// A kernel `comm` field's bytes, up to its NUL.
fn comm_bytes(raw: &[u8]) -> &[u8] {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    &raw[..end]
}

impl<'a> L7Event<'a> {
    /// Parses one ring-buffer record; `None` when it is not an L7 event of
    /// this layout or is shorter than its header says.
    pub fn parse(b: &'a [u8]) -> Option<Self> {
        if b.len() < L7_HEADER_SIZE || u32_at(b, 16) != 1 {
            return None;
        }
        let family = u16_at(b, 28);
        let req_len = usize::from(u16_at(b, 34));
        let resp_len = usize::from(u16_at(b, 36));
        if req_len > REQ_CAP * 2 || resp_len > RESP_CAP {
            return None;
        }
        let req_end = L7_HEADER_SIZE + req_len;
        let resp_end = req_end + resp_len;
        if b.len() < resp_end {
            return None;
        }
        Some(Self {
            req_ts_ns: u64_at(b, 0),
            resp_ts_ns: u64_at(b, 8),
            pid: u32_at(b, 20),
            tid: u32_at(b, 24),
            local: (addr(family, &b[48..64]), u16_at(b, 30)),
            remote: (addr(family, &b[64..80]), u16_at(b, 32)),
            req_total: u32_at(b, 40),
            resp_total: u32_at(b, 44),
            comm: comm_bytes(&b[80..96]),
            req: &b[L7_HEADER_SIZE..req_end],
            resp: &b[req_end..resp_end],
        })
    }
}

/// Key of the on-CPU sample counts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SampleKey {
    /// Process (tgid).
    pub pid: u32,
    /// User stack id; negative when the kernel could not take it.
    pub user_stack: i32,
    /// Kernel stack id; negative when none.
    pub kernel_stack: i32,
    /// Thread `comm`.
    pub comm: String,
}

impl SampleKey {
    /// Parses the raw map key.
    pub fn parse(b: &[u8; SAMPLE_KEY_SIZE]) -> Self {
        Self {
            pid: u32_at(b, 0),
            user_stack: i32_at(b, 4),
            kernel_stack: i32_at(b, 8),
            comm: crate::l7::text(comm_bytes(&b[12..28])).into_owned(),
        }
    }
}

/// What went wrong on a TCP connection, per `TCP_*` in `vigil.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpTrouble {
    /// A segment was retransmitted.
    Retransmit,
    /// This host sent a reset.
    SendReset,
    /// The peer sent a reset.
    ReceiveReset,
    /// An outgoing connection attempt failed (SYN_SENT → CLOSE).
    ConnectFail,
}

/// Key of the TCP health counters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpKey {
    /// The peer.
    pub peer: (IpAddr, u16),
    /// The trouble.
    pub kind: TcpTrouble,
}

impl TcpKey {
    /// Parses the raw map key; `None` for an unknown kind.
    pub fn parse(b: &[u8; TCP_KEY_SIZE]) -> Option<Self> {
        let kind = match u32_at(b, 20) {
            1 => TcpTrouble::Retransmit,
            2 => TcpTrouble::SendReset,
            3 => TcpTrouble::ReceiveReset,
            4 => TcpTrouble::ConnectFail,
            _ => return None,
        };
        Some(Self {
            peer: (addr(u16_at(b, 18), &b[0..16]), u16_at(b, 16)),
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sizes_match_the_rust_offsets() {
        let header = include_str!("../../ebpf/vigil.h");
        assert!(header.contains(&format!("sizeof(struct vigil_l7_event) == {L7_EVENT_SIZE}")));
        assert!(header.contains(&format!(
            "sizeof(struct vigil_sample_key) == {SAMPLE_KEY_SIZE}"
        )));
        assert!(header.contains(&format!("sizeof(struct vigil_tcp_key) == {TCP_KEY_SIZE}")));
        assert!(header.contains(&format!("#define VIGIL_WIRE_VERSION {WIRE_VERSION}")));
        assert!(header.contains(&format!("#define REQ_CAP {REQ_CAP}")));
        assert!(header.contains(&format!("#define RESP_CAP {RESP_CAP}")));
        assert!(header.contains(&format!("#define L7_HEADER_SIZE {L7_HEADER_SIZE}")));
    }

    #[test]
    fn parses_an_ipv4_event() {
        // A record as long as its data: header, 3 request bytes, 2 response bytes.
        let mut b = vec![0u8; L7_HEADER_SIZE + 5];
        b[0..8].copy_from_slice(&100u64.to_le_bytes());
        b[8..16].copy_from_slice(&300u64.to_le_bytes());
        b[16..20].copy_from_slice(&1u32.to_le_bytes());
        b[20..24].copy_from_slice(&42u32.to_le_bytes());
        b[28..30].copy_from_slice(&2u16.to_le_bytes());
        b[30..32].copy_from_slice(&6379u16.to_le_bytes());
        b[32..34].copy_from_slice(&50000u16.to_le_bytes());
        b[34..36].copy_from_slice(&3u16.to_le_bytes());
        b[36..38].copy_from_slice(&2u16.to_le_bytes());
        b[48..52].copy_from_slice(&[127, 0, 0, 1]);
        b[64..68].copy_from_slice(&[10, 0, 0, 2]);
        b[80..85].copy_from_slice(b"redis");
        b[96..101].copy_from_slice(b"abc+O");
        let e = L7Event::parse(&b).expect("event");
        assert_eq!(e.pid, 42);
        assert_eq!(e.local, ("127.0.0.1".parse().expect("ip"), 6379));
        assert_eq!(e.remote, ("10.0.0.2".parse().expect("ip"), 50000));
        assert_eq!(e.comm, b"redis");
        assert_eq!(e.req, b"abc");
        assert_eq!(e.resp, b"+O");
        assert_eq!(e.resp_ts_ns - e.req_ts_ns, 200);
        // A record cut short of the lengths its header claims is refused.
        assert_eq!(L7Event::parse(&b[..L7_HEADER_SIZE + 4]), None);
    }
}
