//! Which processes serve the capture's ports. The kernel programs capture only
//! these processes' syscalls, so every other process on the host pays one map
//! lookup per read or write instead of a walk from its fd to a socket.
//!
//! A scan reads each network namespace's TCP tables for sockets listening on
//! the ports, then finds the processes holding those sockets (workers that
//! inherited a listening socket count). The kernel side adds processes that
//! start listening or fork after a scan; scans catch up with everything else.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use procfs::net::TcpState;
use procfs::process::{all_processes_with_root, FDTarget, Process};

use crate::error::AgentError;

/// Pids (tgids) of the processes holding a socket that listens on one of
/// `ports`, in any network namespace, read under `proc_root`.
///
/// Processes that vanish or cannot be read mid-scan are skipped: a scan is a
/// snapshot, and the next one corrects it.
pub fn listening_pids(proc_root: &Path, ports: &[u16]) -> Result<BTreeSet<u32>, AgentError> {
    let mut found = BTreeSet::new();
    if ports.is_empty() {
        return Ok(found);
    }
    let processes: Vec<Process> = all_processes_with_root(proc_root)
        .map_err(|e| AgentError::io(proc_root, std::io::Error::other(e.to_string())))?
        .filter_map(Result::ok)
        .collect();
    // Listening socket inodes per network namespace, read once per namespace.
    let mut listening_by_netns: HashMap<u64, HashSet<u64>> = HashMap::new();
    for process in &processes {
        let Some(netns) = net_namespace(proc_root, process.pid) else {
            continue;
        };
        let listening = listening_by_netns
            .entry(netns)
            .or_insert_with(|| listening_inodes(process, ports));
        if listening.is_empty() {
            continue;
        }
        let Ok(fds) = process.fd() else {
            continue;
        };
        let holds_listener = fds
            .filter_map(Result::ok)
            .any(|fd| matches!(fd.target, FDTarget::Socket(inode) if listening.contains(&inode)));
        if holds_listener {
            if let Ok(pid) = u32::try_from(process.pid) {
                found.insert(pid);
            }
        }
    }
    Ok(found)
}

/// The inode of the process's network namespace, or `None` if it is gone.
fn net_namespace(proc_root: &Path, pid: i32) -> Option<u64> {
    std::fs::metadata(proc_root.join(pid.to_string()).join("ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// Inodes of the TCP sockets (v4 and v6) listening on `ports`, as the
/// process's network namespace sees them.
fn listening_inodes(process: &Process, ports: &[u16]) -> HashSet<u64> {
    let v4 = process.tcp().unwrap_or_default();
    let v6 = process.tcp6().unwrap_or_default();
    v4.into_iter()
        .chain(v6)
        .filter(|entry| {
            entry.state == TcpState::Listen && ports.contains(&entry.local_address.port())
        })
        .map(|entry| entry.inode)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_listening_and_not_a_client() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let me = std::process::id();
        let pids = listening_pids(Path::new("/proc"), &[port]).expect("scan");
        assert!(pids.contains(&me), "{pids:?} lacks {me}");

        // A connected client socket on the same port is not a listener.
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        drop(listener);
        let pids = listening_pids(Path::new("/proc"), &[port]).expect("scan");
        assert!(!pids.contains(&me), "{pids:?} still has {me}");
    }

    #[test]
    fn no_ports_means_no_processes() {
        assert!(listening_pids(Path::new("/proc"), &[])
            .expect("scan")
            .is_empty());
    }

    #[test]
    fn a_missing_proc_root_is_an_error_that_names_it() {
        let err =
            listening_pids(Path::new("/nonexistent-proc"), &[80]).expect_err("no /proc there");
        assert!(err.to_string().contains("/nonexistent-proc"), "{err}");
    }
}
