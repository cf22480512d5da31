//! Injectors: each makes one real fault and undoes it.
//!
//! Undo is layered: [`Injector::recover`] undoes cleanly and reports what it
//! did; dropping an injector undoes what can be undone without async (abort
//! the background task, which closes its connection and so releases a MySQL
//! lock or stops a Redis loop; kill the hog; delete the `tc` qdisc).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mysql_async::prelude::Queryable;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::experiment::{Injection, RedisSlowMode};
use crate::ChaosError;

/// What injectors need from the program running them.
#[derive(Clone, Debug)]
pub struct InjectorContext {
    /// The program that becomes the CPU hog, and its arguments; it must idle
    /// until it reads `burn` on stdin and exit at end of stdin (see [`burn`]).
    pub hog_command: Vec<String>,
    /// Scratch directory (the hog's named link lives here).
    pub work_dir: PathBuf,
}

/// One fault.
#[async_trait]
pub trait Injector: Send {
    /// Sets up what must exist before the baseline (the idle hog, the proxy).
    async fn prepare(&mut self) -> Result<(), ChaosError> {
        Ok(())
    }
    /// Starts the fault.
    async fn inject(&mut self) -> Result<(), ChaosError>;
    /// Undoes the fault and whatever `prepare` set up; safe to call twice and
    /// after a failed `inject`. Returns what it undid, for the report.
    async fn recover(&mut self) -> Result<Vec<String>, ChaosError>;
    /// One line on what the fault is.
    fn describe(&self) -> String;
}

/// Builds the injector of `injection`.
pub fn injector(injection: &Injection, context: &InjectorContext) -> Box<dyn Injector> {
    match injection {
        Injection::CpuHog {
            process_name,
            threads,
        } => Box::new(CpuHog {
            name: process_name.clone(),
            threads: *threads,
            context: context.clone(),
            child: None,
        }),
        Injection::MysqlSlow {
            url,
            table,
            hold_ms,
            gap_ms,
        } => Box::new(MysqlLock {
            url: url.clone(),
            table: table.clone(),
            hold: Duration::from_millis(*hold_ms),
            gap: Duration::from_millis(*gap_ms),
            task: Background::default(),
        }),
        Injection::RedisSlow {
            url,
            mode,
            block_ms,
            gap_ms,
            elements,
        } => Box::new(RedisSlow {
            url: url.clone(),
            mode: *mode,
            block: Duration::from_millis(*block_ms),
            gap: Duration::from_millis(*gap_ms),
            elements: *elements,
            task: Background::default(),
        }),
        Injection::ErrorBurst {
            listen,
            upstream,
            ratio,
            status,
        } => Box::new(ErrorBurst {
            listen: listen.clone(),
            upstream: upstream.trim_end_matches('/').to_owned(),
            ratio: *ratio,
            status: *status,
            failing: Arc::new(AtomicBool::new(false)),
            server: Background::default(),
        }),
        Injection::NetworkDelay {
            interface,
            port,
            delay_ms,
        } => Box::new(NetworkDelay {
            interface: interface.clone(),
            port: *port,
            delay_ms: *delay_ms,
            installed: false,
        }),
    }
}

/// A background task aborted when dropped.
#[derive(Default)]
struct Background(Option<JoinHandle<()>>);

impl Background {
    fn start(&mut self, task: JoinHandle<()>) {
        self.stop();
        self.0 = Some(task);
    }

    /// Aborts the task and waits for it to be gone; true when one ran.
    async fn stop_and_wait(&mut self) -> bool {
        match self.0.take() {
            Some(task) => {
                task.abort();
                let _ = task.await;
                true
            }
            None => false,
        }
    }

    fn stop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}

fn failed(injector: &'static str, what: &str, err: impl std::fmt::Display) -> ChaosError {
    ChaosError::Inject {
        injector,
        message: format!("{what}: {err}"),
    }
}

// ---------------------------------------------------------------- cpu-hog

/// The body of the hog process: idles until `burn` arrives on stdin, then
/// keeps `threads` threads busy; exits when stdin closes, so the hog dies
/// with whoever started it, even if that process is killed outright.
pub fn burn(threads: usize) -> std::io::Result<()> {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    while let Some(line) = lines.next().transpose()? {
        if line.trim() == "burn" {
            for _ in 0..threads.max(1) {
                std::thread::spawn(|| {
                    let mut x: u64 = 1;
                    loop {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                });
            }
        }
    }
    Ok(())
}

struct CpuHog {
    name: String,
    threads: usize,
    context: InjectorContext,
    child: Option<tokio::process::Child>,
}

#[async_trait]
impl Injector for CpuHog {
    async fn prepare(&mut self) -> Result<(), ChaosError> {
        let Some((program, args)) = self.context.hog_command.split_first() else {
            return Err(failed("cpu-hog", "no hog program", "empty command"));
        };
        // The kernel names a process after the file it executes, so a link
        // named `cpu-hog` runs the hog under that name.
        std::fs::create_dir_all(&self.context.work_dir)
            .map_err(|e| failed("cpu-hog", "creating the work directory", e))?;
        let link = self.context.work_dir.join(&self.name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(program, &link)
            .map_err(|e| failed("cpu-hog", &format!("linking {}", link.display()), e))?;
        let child = tokio::process::Command::new(&link)
            .args(args)
            .arg("--threads")
            .arg(self.threads.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed("cpu-hog", &format!("starting {}", link.display()), e))?;
        info!(pid = child.id(), name = %self.name, "cpu hog started idle");
        self.child = Some(child);
        Ok(())
    }

    async fn inject(&mut self) -> Result<(), ChaosError> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| failed("cpu-hog", "inject", "the hog was not prepared"))?;
        let stdin = child
            .stdin
            .as_mut()
            .ok_or_else(|| failed("cpu-hog", "inject", "the hog's stdin is closed"))?;
        stdin
            .write_all(b"burn\n")
            .await
            .map_err(|e| failed("cpu-hog", "telling the hog to burn", e))?;
        stdin
            .flush()
            .await
            .map_err(|e| failed("cpu-hog", "telling the hog to burn", e))?;
        Ok(())
    }

    async fn recover(&mut self) -> Result<Vec<String>, ChaosError> {
        let mut done = Vec::new();
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            child
                .kill()
                .await
                .map_err(|e| failed("cpu-hog", "killing the hog", e))?;
            done.push(format!("killed {} (pid {})", self.name, pid.unwrap_or(0)));
        }
        let _ = std::fs::remove_file(self.context.work_dir.join(&self.name));
        Ok(done)
    }

    fn describe(&self) -> String {
        format!(
            "process `{}` burning {} thread(s) without releasing them",
            self.name, self.threads
        )
    }
}

// ---------------------------------------------------------------- mysql-slow

struct MysqlLock {
    url: String,
    table: String,
    hold: Duration,
    gap: Duration,
    task: Background,
}

#[async_trait]
impl Injector for MysqlLock {
    async fn prepare(&mut self) -> Result<(), ChaosError> {
        // Fail before the baseline, not at injection, when the server or the
        // table is not there.
        let mut conn = mysql_conn(&self.url).await?;
        conn.query_drop(format!("SELECT 1 FROM {} LIMIT 1", self.table))
            .await
            .map_err(|e| failed("mysql-slow", &format!("reading table {}", self.table), e))?;
        let _ = conn.disconnect().await;
        Ok(())
    }

    async fn inject(&mut self) -> Result<(), ChaosError> {
        let mut conn = mysql_conn(&self.url).await?;
        let (table, hold, gap) = (self.table.clone(), self.hold, self.gap);
        // Take the lock once here so a refusal (no LOCK TABLES grant) fails the
        // injection instead of a silent background loop.
        conn.query_drop(format!("LOCK TABLES {table} WRITE"))
            .await
            .map_err(|e| failed("mysql-slow", &format!("LOCK TABLES {table} WRITE"), e))?;
        conn.query_drop("UNLOCK TABLES")
            .await
            .map_err(|e| failed("mysql-slow", "UNLOCK TABLES", e))?;
        self.task.start(tokio::spawn(async move {
            loop {
                if let Err(err) = conn.query_drop(format!("LOCK TABLES {table} WRITE")).await {
                    warn!("mysql-slow: LOCK TABLES failed, stopping: {err}");
                    return;
                }
                tokio::time::sleep(hold).await;
                if let Err(err) = conn.query_drop("UNLOCK TABLES").await {
                    warn!("mysql-slow: UNLOCK TABLES failed, stopping: {err}");
                    return;
                }
                tokio::time::sleep(gap).await;
            }
        }));
        Ok(())
    }

    async fn recover(&mut self) -> Result<Vec<String>, ChaosError> {
        // Aborting drops the connection; the server releases its table locks
        // when the session ends.
        if self.task.stop_and_wait().await {
            // Prove it: a fresh session can write-lock the table at once.
            let mut conn = mysql_conn(&self.url).await?;
            conn.query_drop("SET SESSION lock_wait_timeout = 10")
                .await
                .map_err(|e| failed("mysql-slow", "checking the lock is gone", e))?;
            conn.query_drop(format!("LOCK TABLES {} WRITE", self.table))
                .await
                .map_err(|e| failed("mysql-slow", "checking the lock is gone", e))?;
            conn.query_drop("UNLOCK TABLES")
                .await
                .map_err(|e| failed("mysql-slow", "checking the lock is gone", e))?;
            let _ = conn.disconnect().await;
            return Ok(vec![format!(
                "released the lock on {} (the table locks again at once)",
                self.table
            )]);
        }
        Ok(Vec::new())
    }

    fn describe(&self) -> String {
        format!(
            "LOCK TABLES {} WRITE held {} ms of every {} ms",
            self.table,
            self.hold.as_millis(),
            (self.hold + self.gap).as_millis()
        )
    }
}

async fn mysql_conn(url: &str) -> Result<mysql_async::Conn, ChaosError> {
    let opts =
        mysql_async::Opts::from_url(url).map_err(|e| failed("mysql-slow", "injection.url", e))?;
    mysql_async::Conn::new(opts)
        .await
        .map_err(|e| failed("mysql-slow", "connecting", e))
}

// ---------------------------------------------------------------- redis-slow

/// The key `big-key` fills (dropped on recovery).
const BIG_KEY: &str = "vigil:chaos:big-key";

struct RedisSlow {
    url: String,
    mode: RedisSlowMode,
    block: Duration,
    gap: Duration,
    elements: usize,
    task: Background,
}

async fn redis_conn(url: &str) -> Result<redis::aio::MultiplexedConnection, ChaosError> {
    let client = redis::Client::open(url).map_err(|e| failed("redis-slow", "injection.url", e))?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| failed("redis-slow", "connecting", e))
}

#[async_trait]
impl Injector for RedisSlow {
    async fn prepare(&mut self) -> Result<(), ChaosError> {
        let mut conn = redis_conn(&self.url).await?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| failed("redis-slow", "PING", e))?;
        Ok(())
    }

    async fn inject(&mut self) -> Result<(), ChaosError> {
        let mut conn = redis_conn(&self.url).await?;
        let gap = self.gap;
        match self.mode {
            RedisSlowMode::DebugSleep => {
                let seconds = format!("{:.3}", self.block.as_secs_f64());
                // One block now, so a server with DEBUG disabled fails here.
                let _: () = redis::cmd("DEBUG")
                    .arg("SLEEP")
                    .arg(&seconds)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| {
                        failed(
                            "redis-slow",
                            "DEBUG SLEEP (enable-debug-command must allow it, or use mode: big-key)",
                            e,
                        )
                    })?;
                self.task.start(tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(gap).await;
                        let done: Result<(), _> = redis::cmd("DEBUG")
                            .arg("SLEEP")
                            .arg(&seconds)
                            .query_async(&mut conn)
                            .await;
                        if let Err(err) = done {
                            warn!("redis-slow: DEBUG SLEEP failed, stopping: {err}");
                            return;
                        }
                    }
                }));
            }
            RedisSlowMode::BigKey => {
                let _: () = redis::cmd("DEL")
                    .arg(BIG_KEY)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| failed("redis-slow", "DEL", e))?;
                let chunk: Vec<String> = (0..1000).map(|i| format!("element-{i:06}")).collect();
                let mut written = 0;
                while written < self.elements {
                    let n = chunk.len().min(self.elements - written);
                    let _: () = redis::cmd("RPUSH")
                        .arg(BIG_KEY)
                        .arg(&chunk[..n])
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| failed("redis-slow", "RPUSH", e))?;
                    written += n;
                }
                self.task.start(tokio::spawn(async move {
                    loop {
                        let read: Result<usize, _> = redis::cmd("LRANGE")
                            .arg(BIG_KEY)
                            .arg(0)
                            .arg(-1)
                            .query_async::<Vec<redis::Value>>(&mut conn)
                            .await
                            .map(|v| v.len());
                        if let Err(err) = read {
                            warn!("redis-slow: LRANGE failed, stopping: {err}");
                            return;
                        }
                        tokio::time::sleep(gap).await;
                    }
                }));
            }
        }
        Ok(())
    }

    async fn recover(&mut self) -> Result<Vec<String>, ChaosError> {
        let mut done = Vec::new();
        if self.task.stop_and_wait().await {
            done.push(format!("stopped the {} loop", self.mode_name()));
        }
        if self.mode == RedisSlowMode::BigKey {
            let mut conn = redis_conn(&self.url).await?;
            let removed: u64 = redis::cmd("DEL")
                .arg(BIG_KEY)
                .query_async(&mut conn)
                .await
                .map_err(|e| failed("redis-slow", "DEL", e))?;
            if removed > 0 {
                done.push(format!("deleted {BIG_KEY}"));
            }
        }
        Ok(done)
    }

    fn describe(&self) -> String {
        match self.mode {
            RedisSlowMode::DebugSleep => format!(
                "Redis blocked by DEBUG SLEEP for {} ms of every {} ms",
                self.block.as_millis(),
                (self.block + self.gap).as_millis()
            ),
            RedisSlowMode::BigKey => format!(
                "a {}-element list read whole (LRANGE 0 -1) every {} ms",
                self.elements,
                self.gap.as_millis()
            ),
        }
    }
}

impl RedisSlow {
    fn mode_name(&self) -> &'static str {
        match self.mode {
            RedisSlowMode::DebugSleep => "DEBUG SLEEP",
            RedisSlowMode::BigKey => "LRANGE",
        }
    }
}

// ---------------------------------------------------------------- error-burst

struct ErrorBurst {
    listen: String,
    upstream: String,
    ratio: f64,
    status: u16,
    failing: Arc<AtomicBool>,
    server: Background,
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    failing: Arc<AtomicBool>,
    ratio: f64,
    status: StatusCode,
    seen: AtomicU64,
}

/// Largest request body the proxy forwards.
const PROXY_BODY_LIMIT: usize = 1 << 20;

async fn proxy(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    if proxy.failing.load(Ordering::Relaxed) {
        // Fail exactly `ratio` of the requests: request n fails when the
        // running count of failures due, floor(n·ratio), steps up.
        let n = proxy.seen.fetch_add(1, Ordering::Relaxed) + 1;
        let due = |n: u64| (n as f64 * proxy.ratio).floor() as u64;
        if due(n) > due(n - 1) {
            return (proxy.status, "injected by vigil chaos\n").into_response();
        }
    }
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let Ok(body) = axum::body::to_bytes(body, PROXY_BODY_LIMIT).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "body over 1 MiB\n").into_response();
    };
    let forwarded = proxy
        .client
        .request(parts.method, format!("{}{path}", proxy.upstream))
        .body(body)
        .send()
        .await;
    match forwarded {
        Ok(response) => {
            let status = response.status();
            match response.bytes().await {
                Ok(bytes) => (status, Body::from(bytes)).into_response(),
                Err(err) => (StatusCode::BAD_GATEWAY, format!("upstream: {err}\n")).into_response(),
            }
        }
        Err(err) => (StatusCode::BAD_GATEWAY, format!("upstream: {err}\n")).into_response(),
    }
}

#[async_trait]
impl Injector for ErrorBurst {
    async fn prepare(&mut self) -> Result<(), ChaosError> {
        let address: SocketAddr = self
            .listen
            .parse()
            .map_err(|e| failed("error-burst", "injection.listen", e))?;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| failed("error-burst", &format!("listening on {address}"), e))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| failed("error-burst", "HTTP client", e))?;
        let state = Arc::new(Proxy {
            upstream: self.upstream.clone(),
            client,
            failing: self.failing.clone(),
            ratio: self.ratio,
            status: StatusCode::from_u16(self.status)
                .map_err(|e| failed("error-burst", "injection.status", e))?,
            seen: AtomicU64::new(0),
        });
        let app = axum::Router::new().fallback(proxy).with_state(state);
        self.server.start(tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                warn!("error-burst proxy stopped: {err}");
            }
        }));
        Ok(())
    }

    async fn inject(&mut self) -> Result<(), ChaosError> {
        self.failing.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn recover(&mut self) -> Result<Vec<String>, ChaosError> {
        let mut done = Vec::new();
        if self.failing.swap(false, Ordering::Relaxed) {
            done.push("the proxy forwards every request again".to_owned());
        }
        if self.server.stop_and_wait().await {
            done.push(format!("stopped the proxy on {}", self.listen));
        }
        Ok(done)
    }

    fn describe(&self) -> String {
        format!(
            "{:.0} % of requests through {} → {} answered {}",
            self.ratio * 100.0,
            self.listen,
            self.upstream,
            self.status
        )
    }
}

// ---------------------------------------------------------------- network-delay

struct NetworkDelay {
    interface: String,
    port: u16,
    delay_ms: u64,
    installed: bool,
}

async fn tc(args: &[&str]) -> Result<String, String> {
    let output = tokio::process::Command::new("tc")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run tc (apt-get install iproute2): {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "tc {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Whether `tc netem` can delay packets on `interface` here; the error says why not.
pub async fn network_delay_available(interface: &str) -> Result<(), ChaosError> {
    let unavailable = |reason: String| ChaosError::Unavailable {
        injector: "network-delay",
        reason,
    };
    let qdiscs = tc(&["qdisc", "show", "dev", interface])
        .await
        .map_err(unavailable)?;
    // Never replace a root qdisc someone configured (shaping, HTB…).
    let root = qdiscs.lines().find(|l| l.contains(" root ")).unwrap_or("");
    let default = ["noqueue", "pfifo_fast", "fq_codel", "mq", "fq ", "pfifo"];
    if !root.is_empty() && !default.iter().any(|d| root.contains(&format!("qdisc {d}"))) {
        return Err(unavailable(format!(
            "{interface} already has a configured root qdisc ({}); not replacing it",
            root.trim()
        )));
    }
    let probe = [
        "qdisc", "add", "dev", interface, "root", "netem", "delay", "0ms",
    ];
    tc(&probe).await.map_err(|e| {
        unavailable(format!(
            "{e} (the sch_netem module may be missing, or this needs root)"
        ))
    })?;
    tc(&["qdisc", "del", "dev", interface, "root"])
        .await
        .map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl Injector for NetworkDelay {
    async fn prepare(&mut self) -> Result<(), ChaosError> {
        network_delay_available(&self.interface).await
    }

    async fn inject(&mut self) -> Result<(), ChaosError> {
        let dev = self.interface.as_str();
        let delay = format!("{}ms", self.delay_ms);
        let port = self.port.to_string();
        // A prio root with netem on its third band, and a filter that sends
        // only packets to `port` there: the rest of the host is untouched.
        let steps: [Vec<&str>; 3] = [
            vec!["qdisc", "add", "dev", dev, "root", "handle", "1:", "prio"],
            vec![
                "qdisc", "add", "dev", dev, "parent", "1:3", "handle", "30:", "netem", "delay",
                &delay,
            ],
            vec![
                "filter", "add", "dev", dev, "protocol", "ip", "parent", "1:0", "prio", "3", "u32",
                "match", "ip", "dport", &port, "0xffff", "flowid", "1:3",
            ],
        ];
        self.installed = true;
        for step in &steps {
            if let Err(err) = tc(step).await {
                return Err(failed("network-delay", "tc", err));
            }
        }
        Ok(())
    }

    async fn recover(&mut self) -> Result<Vec<String>, ChaosError> {
        if !std::mem::take(&mut self.installed) {
            return Ok(Vec::new());
        }
        tc(&["qdisc", "del", "dev", &self.interface, "root"])
            .await
            .map_err(|e| failed("network-delay", "removing the qdisc", e))?;
        Ok(vec![format!(
            "removed the netem qdisc on {}",
            self.interface
        )])
    }

    fn describe(&self) -> String {
        format!(
            "{} ms added to packets for port {} on {}",
            self.delay_ms, self.port, self.interface
        )
    }
}

impl Drop for NetworkDelay {
    fn drop(&mut self) {
        if self.installed {
            let _ = std::process::Command::new("tc")
                .args(["qdisc", "del", "dev", &self.interface, "root"])
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_error_proxy_fails_exactly_its_ratio_and_recovers() {
        // Upstream: a real server that always answers 200.
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let upstream_addr = upstream.local_addr().expect("addr");
        tokio::spawn(async move {
            let app = axum::Router::new().fallback(|| async { "fine" });
            axum::serve(upstream, app).await.expect("upstream");
        });
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        let listen = probe.local_addr().expect("addr").to_string();
        drop(probe);
        let injection = Injection::ErrorBurst {
            listen: listen.clone(),
            upstream: format!("http://{upstream_addr}"),
            ratio: 0.25,
            status: 503,
        };
        let context = InjectorContext {
            hog_command: Vec::new(),
            work_dir: std::env::temp_dir(),
        };
        let mut injector = injector(&injection, &context);
        injector.prepare().await.expect("proxy starts");
        let client = reqwest::Client::new();
        let statuses = |n: usize| {
            let client = client.clone();
            let url = format!("http://{listen}/orders?id=1");
            async move {
                let mut out = Vec::new();
                for _ in 0..n {
                    out.push(
                        client
                            .get(&url)
                            .send()
                            .await
                            .expect("send")
                            .status()
                            .as_u16(),
                    );
                }
                out
            }
        };
        assert!(
            statuses(8).await.iter().all(|s| *s == 200),
            "baseline passes through"
        );
        injector.inject().await.expect("inject");
        let during = statuses(40).await;
        assert_eq!(
            during.iter().filter(|s| **s == 503).count(),
            10,
            "{during:?}"
        );
        assert_eq!(during.iter().filter(|s| **s == 200).count(), 30);
        let undone = injector.recover().await.expect("recover");
        assert_eq!(undone.len(), 2, "{undone:?}");
        assert!(
            client
                .get(format!("http://{listen}/"))
                .send()
                .await
                .is_err(),
            "the proxy is gone after recovery"
        );
    }
}
