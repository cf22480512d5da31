//! L7 capture against real servers (root; Redis and MariaDB from scripts/services.sh).

mod common;

use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use vigil_agent::bpf::CaptureTrigger;
use vigil_model::{L7Protocol, ResponseStatus};

/// A captured server time must hold what the server is known to have spent
/// (`at_least_ms`: a sleep, or its own measured think time) and fit inside
/// what the client saw (`client`: the whole client call, connecting included).
/// On a quiet machine that pins it within a few percent; on a loaded one the
/// bound follows what really happened, so a slow server is not a failure.
fn assert_server_time(
    measured_us: u64,
    at_least_ms: f64,
    client: Duration,
    trigger: CaptureTrigger,
) {
    let ms = measured_us as f64 / 1000.0;
    let client_ms = client.as_secs_f64() * 1000.0;
    assert!(
        ms >= at_least_ms * 0.99 && ms <= client_ms,
        "{trigger:?}: captured {ms} ms, expected at least {at_least_ms} ms and at most the client's {client_ms} ms"
    );
}

/// Runs `command`, and how long it took.
fn timed(command: &mut Command) -> (std::process::Output, Duration) {
    let started = std::time::Instant::now();
    let out = command.output().expect("client command");
    (out, started.elapsed())
}

#[test]
fn redis_debug_sleep_is_one_request_of_200ms() {
    for trigger in common::triggers() {
        redis_debug_sleep_with(trigger);
    }
}

fn redis_debug_sleep_with(trigger: CaptureTrigger) {
    let port: u16 = common::env("VIGIL_TEST_REDIS_PORT").parse().expect("port");
    let (capture, mut records) = common::capture_with(&[port], true, Some(trigger));
    let (out, client) =
        timed(Command::new("redis-cli").args(["-p", &port.to_string(), "DEBUG", "SLEEP", "0.2"]));
    assert!(out.status.success(), "{out:?}");
    let record = records.wait_for(Duration::from_secs(10), |r| {
        r.protocol == L7Protocol::Redis && r.request_type == "DEBUG"
    });
    assert_server_time(record.duration_us, 200.0, client, trigger);
    assert_eq!(record.status, ResponseStatus::Ok);
    assert_eq!(record.server.port, port);
    assert_eq!(record.server.process_name, "redis-server");
    assert!(record.server.pid > 0);
    assert_ne!(record.client.port, 0);
    capture.stop();
}

#[test]
fn mariadb_select_sleep_is_one_request_of_300ms_with_its_shape() {
    for trigger in common::triggers() {
        mariadb_select_sleep_with(trigger);
    }
}

fn mariadb_select_sleep_with(trigger: CaptureTrigger) {
    let port: u16 = common::env("VIGIL_TEST_MYSQL_PORT").parse().expect("port");
    let (capture, mut records) = common::capture_with(&[port], true, Some(trigger));
    let (out, client) = timed(Command::new("mariadb").args([
        "--no-defaults",
        "-h127.0.0.1",
        &format!("-P{port}"),
        "-uvigil",
        "-pvigil",
        "-e",
        "SELECT SLEEP(0.3); SELECT nosuchcolumn FROM DUAL;",
    ]));
    let record = records.wait_for(Duration::from_secs(10), |r| {
        r.protocol == L7Protocol::Mysql && r.endpoint == "SELECT SLEEP(?)"
    });
    assert_server_time(record.duration_us, 300.0, client, trigger);
    assert_eq!(record.request_type, "SELECT");
    assert_eq!(record.status, ResponseStatus::Ok);
    let error = records.wait_for(Duration::from_secs(10), |r| {
        r.protocol == L7Protocol::Mysql && r.endpoint.contains("nosuchcolumn")
    });
    assert!(!out.status.success(), "the second statement fails");
    assert_eq!(error.code, Some(1054));
    assert_eq!(error.status, ResponseStatus::ClientError);
    capture.stop();
}

#[test]
fn http_request_to_a_local_server_has_path_status_and_request_id() {
    for trigger in common::triggers() {
        http_request_with(trigger);
    }
}

fn http_request_with(trigger: CaptureTrigger) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // The server runs in this process, so this capture does not exclude it.
    let (capture, mut records) = common::capture_with(&[port], false, Some(trigger));
    // The server measures its own think time between reading the request and
    // writing the response: that is what the capture must report.
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).expect("read");
        let read_at = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        let think = read_at.elapsed();
        stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .expect("write");
        think
    });
    let (out, client) = timed(
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-H", "X-Request-Id: req-42"])
            .arg(format!("http://127.0.0.1:{port}/api/orders/123?token=x")),
    );
    assert!(out.status.success(), "{out:?}");
    let think = server.join().expect("server");
    let record = records.wait_for(Duration::from_secs(10), |r| r.protocol == L7Protocol::Http);
    assert_eq!(record.request_type, "GET");
    assert_eq!(record.resource, "/api/orders/123");
    assert_eq!(record.endpoint, "/api/orders");
    assert_eq!(record.code, Some(404));
    assert_eq!(record.status, ResponseStatus::ClientError);
    assert_eq!(record.trace_id, "req-42");
    assert_server_time(
        record.duration_us,
        think.as_secs_f64() * 1000.0,
        client,
        trigger,
    );
    capture.stop();
}

#[test]
fn paused_capture_records_nothing_and_resumes() {
    for trigger in common::triggers() {
        paused_capture_with(trigger);
    }
}

fn paused_capture_with(trigger: CaptureTrigger) {
    let port: u16 = common::env("VIGIL_TEST_REDIS_PORT").parse().expect("port");
    let (capture, mut records) = common::capture_with(&[port], true, Some(trigger));
    let redis = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "{out:?}");
    };
    let wait_state = |paused: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while capture
            .counters
            .paused_in_kernel
            .load(std::sync::atomic::Ordering::SeqCst)
            != paused
        {
            assert!(
                std::time::Instant::now() < deadline,
                "pause state not applied"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let load =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::SeqCst);
    let (ports, servers) = (
        &capture.counters.capture_ports,
        &capture.counters.server_processes,
    );
    // Only the syscall-exit trigger needs the list of server processes.
    let scanned = u64::from(trigger == CaptureTrigger::SyscallExit);
    assert_eq!(load(ports), 1);
    assert_eq!(
        load(servers),
        scanned,
        "{trigger:?}: the scan finds the one redis-server"
    );
    capture.set_paused(true);
    wait_state(1);
    assert_eq!(load(ports), 0, "{trigger:?}: paused, no port is captured");
    assert_eq!(
        load(servers),
        0,
        "{trigger:?}: paused, no process is looked at"
    );
    redis(&["GET", "paused_probe"]);
    capture.set_paused(false);
    wait_state(0);
    assert_eq!(load(ports), 1);
    assert_eq!(
        load(servers),
        scanned,
        "{trigger:?}: resumed, the scan runs again"
    );
    redis(&["GET", "resumed_probe"]);
    records.wait_for(Duration::from_secs(10), |r| {
        r.resource == "GET resumed_probe"
    });
    // Records arrive in order: one captured while paused would have come first.
    assert!(
        records
            .take_seen()
            .iter()
            .all(|r| r.resource != "GET paused_probe"),
        "{trigger:?}: a request was captured while paused"
    );
    capture.stop();
}

/// A fork-per-connection server (socat) that starts after the capture is
/// captured. Where the kernel traces only listed server processes (the
/// syscall-exit trigger), that is long before the next scan: the kernel
/// follows its listen() and the fork that serves each connection.
#[test]
fn a_forking_server_started_after_the_capture_is_captured() {
    for trigger in common::triggers() {
        forking_server_with(trigger);
    }
}

fn forking_server_with(trigger: CaptureTrigger) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let (capture, mut records) = common::capture_with(&[port], true, Some(trigger));
    // socat reads its own escapes in SYSTEM:, so the response comes from a file.
    let response = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        response.path(),
        "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .expect("write response");
    let reply = format!("read line; cat {}", response.path().display());
    let _server = common::Killed(
        Command::new("socat")
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
            .arg(format!("SYSTEM:{reply}"))
            .spawn()
            .expect("socat (apt-get install socat)"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "socat never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/forked/child"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201", "{out:?}");
    let record = records.wait_for(Duration::from_secs(5), |r| {
        r.protocol == L7Protocol::Http && r.resource == "/forked/child"
    });
    assert_eq!(record.code, Some(201));
    assert_eq!(record.server.process_name, "socat");
    assert_eq!(record.server.port, port);
    capture.stop();
}

/// Kernels with the socket tracepoints (6.5+) get the socket trigger, which
/// spares every other syscall of the host.
#[test]
fn the_socket_trigger_is_chosen_where_the_kernel_has_it() {
    let port: u16 = common::env("VIGIL_TEST_REDIS_PORT").parse().expect("port");
    // Started first: loading mounts tracefs if it is not.
    let (capture, _records) = common::capture(&[port], true);
    let tracefs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    let has_socket_tracepoints = tracefs.iter().any(|root| {
        std::path::Path::new(root)
            .join("events/sock/sock_send_length")
            .exists()
    });
    let expected = if has_socket_tracepoints {
        CaptureTrigger::Socket
    } else {
        CaptureTrigger::SyscallExit
    };
    assert_eq!(capture.trigger(), Some(expected));
    capture.stop();
}

/// A response sent with sendfile (no user buffer to read) still ends its
/// request: the socket trigger sees every send on the socket. The record has
/// the request's shape and timing, and no response bytes, so no status.
#[test]
fn a_response_sent_by_sendfile_ends_its_request() {
    let trigger = CaptureTrigger::for_this_kernel().expect("kernel BTF");
    if trigger != CaptureTrigger::Socket {
        eprintln!("sendfile responses need the socket trigger, which this kernel lacks");
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let (capture, mut records) = common::capture(&[port], true);
    let response = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        response.path(),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    )
    .expect("write response");
    // Python's socket.sendfile is os.sendfile(2); the server prints its think
    // time (from the request read to the response) in µs.
    let server_code = r#"
import socket, sys, time
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
body = open(sys.argv[2], "rb")
print("listening", flush=True)
conn, _ = listener.accept()
conn.recv(4096)
read_at = time.monotonic()
time.sleep(0.2)
think = time.monotonic() - read_at
conn.sendfile(body)
conn.close()
print(int(think * 1e6), flush=True)
"#;
    let mut server = Command::new("python3")
        .args(["-c", server_code, &port.to_string()])
        .arg(response.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut lines = std::io::BufReader::new(server.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().expect("a line").expect("read"), "listening");
    let (out, client) = timed(
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{port}/static/file.txt")),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    let think_us: u64 = lines
        .next()
        .expect("think time")
        .expect("read")
        .parse()
        .expect("µs");
    assert!(server.wait().expect("python3").success());
    let record = records.wait_for(Duration::from_secs(10), |r| {
        r.protocol == L7Protocol::Http && r.resource == "/static/file.txt"
    });
    assert_eq!(record.status, ResponseStatus::Unknown);
    assert_eq!(record.server.process_name, "python3");
    assert_server_time(
        record.duration_us,
        think_us as f64 / 1000.0,
        client,
        trigger,
    );
    capture.stop();
}

/// `pids` narrows the capture to those processes, whatever the trigger: the
/// socket trigger then checks the kernel's process set too.
#[test]
fn pids_narrow_the_capture_to_those_processes() {
    let port: u16 = common::env("VIGIL_TEST_REDIS_PORT").parse().expect("port");
    let redis_pid = *vigil_agent::listeners::listening_pids(std::path::Path::new("/proc"), &[port])
        .expect("scan")
        .first()
        .expect("redis-server listens");
    let start = |pids: Vec<u32>| {
        common::require_root();
        let mut settings = vigil_agent::capture::CaptureSettings::for_ports(&[port]);
        settings.pids = pids;
        settings.drain_interval = Duration::from_millis(50);
        let (capture, batches) = vigil_agent::capture::Capture::start(
            settings,
            vigil_agent::container::Identities::default(),
        )
        .expect("eBPF programs load and attach");
        (capture, common::Records::new(batches))
    };
    let (redis_capture, mut redis_records) = start(vec![redis_pid]);
    // pid 1 serves no capture port: nothing of Redis's is captured.
    let (other_capture, mut other_records) = start(vec![1]);
    let key = format!("narrowed_{}", common::unique_letters());
    common::redis_commands(port, &format!("GET {key}\n"));
    redis_records.wait_for(Duration::from_secs(10), |r| {
        r.resource == format!("GET {key}").as_str()
    });
    // Stopping drains the kernel one last time: all it captured is in.
    other_capture.stop();
    assert!(
        other_records
            .take_seen()
            .iter()
            .all(|r| r.server.pid != redis_pid),
        "a capture narrowed to pid 1 captured redis-server"
    );
    redis_capture.stop();
}

/// The export queue holds at most `queue_records` records: those that would
/// pass the bound are dropped and counted, never queued.
#[test]
fn a_full_export_queue_drops_and_counts_what_passes_its_bound() {
    let port: u16 = common::env("VIGIL_TEST_REDIS_PORT").parse().expect("port");
    common::require_root();
    let mut settings = vigil_agent::capture::CaptureSettings::for_ports(&[port]);
    settings.queue_records = 10;
    settings.drain_interval = Duration::from_millis(50);
    let (capture, batches) = vigil_agent::capture::Capture::start(
        settings,
        vigil_agent::container::Identities::default(),
    )
    .expect("eBPF programs load and attach");
    let tok = common::unique_letters();
    // Nothing is received while these arrive: the queue fills to its bound.
    for round in 0..3 {
        let commands: String = (0..8)
            .map(|i| format!("SET q:{tok}:{round}:{i} v\n"))
            .collect();
        common::redis_commands(port, &commands);
        std::thread::sleep(Duration::from_millis(200));
    }
    let counters = capture.counters.clone();
    capture.stop();
    let mut queued = 0;
    while let Ok(batch) = batches.try_recv() {
        queued += batch.len();
    }
    let produced = counters.records.load(std::sync::atomic::Ordering::Relaxed);
    let dropped = counters
        .queue_drops
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(queued <= 10, "{queued} records queued past a bound of 10");
    assert!(dropped > 0, "nothing was dropped");
    assert_eq!(
        queued as u64 + dropped,
        produced,
        "every record is queued or counted"
    );
}

/// A request never answered (the client went away) is forgotten when its
/// socket closes: the kernel reuses socket memory at once, and the next
/// connection's request must not be taken for more of the old one (with its
/// start time). Each round leaves one request unanswered, then serves one.
#[test]
fn an_unanswered_request_does_not_leak_into_the_next_connection() {
    for trigger in common::triggers() {
        unanswered_then_served_with(trigger);
    }
}

fn unanswered_then_served_with(trigger: CaptureTrigger) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // The server runs in this process, so this capture does not exclude it.
    let (capture, mut records) = common::capture_with(&[port], false, Some(trigger));
    let rounds = 20;
    let server = std::thread::spawn(move || {
        for _ in 0..rounds * 2 {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).expect("read");
            if buf[..n].starts_with(b"GET /served") {
                stream
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .expect("write");
            }
            // Either way the server closes its side.
        }
    });
    for round in 0..rounds {
        let mut abandoned = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        abandoned
            .write_all(format!("GET /abandoned/{round} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .expect("write");
        drop(abandoned);
        std::thread::sleep(Duration::from_millis(20));
        let mut served = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let started = std::time::Instant::now();
        served
            .write_all(format!("GET /served/{round} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .expect("write");
        let mut reply = Vec::new();
        served.read_to_end(&mut reply).expect("read");
        let client = started.elapsed();
        let record = records.wait_for(Duration::from_secs(10), |r| {
            r.protocol == L7Protocol::Http && r.code == Some(204)
        });
        assert_eq!(
            record.resource,
            format!("/served/{round}").as_str(),
            "{trigger:?}: round {round}'s request was read as another"
        );
        assert!(
            record.duration_us as f64 <= client.as_secs_f64() * 1e6,
            "{trigger:?}: round {round} took {} µs, longer than its client's {client:?}",
            record.duration_us
        );
    }
    server.join().expect("server");
    capture.stop();
}
