//! The estate's structure: services and servers, their call graph, instances,
//! containers and hosts, statement shapes and endpoints, and the topology the
//! stores see. Built once from the config with a seeded generator.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vigil_model::{Entity, EntityId, EntityKind, L7Protocol, Relation, RelationKind, Topology};

use crate::config::SimConfig;
use crate::noise::{mix, mixture_moments, mixture_quantiles, Component};

/// What part a node plays in the estate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Gateway,
    Api,
    Worker,
    Mysql,
    Redis,
}

impl Role {
    pub fn is_server(self) -> bool {
        matches!(self, Role::Mysql | Role::Redis)
    }

    fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Api => "api",
            Role::Worker => "worker",
            Role::Mysql => "mysql",
            Role::Redis => "redis",
        }
    }
}

/// The runtime of a service, which fixes its process name, port and stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Language {
    Java,
    Node,
    Python,
    Go,
}

impl Language {
    fn pick(bits: u64) -> Self {
        match bits % 20 {
            0..=8 => Language::Java,
            9..=12 => Language::Node,
            13..=15 => Language::Python,
            _ => Language::Go,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Language::Java => "java",
            Language::Node => "nodejs",
            Language::Python => "python",
            Language::Go => "go",
        }
    }

    fn port(self) -> u16 {
        match self {
            Language::Java | Language::Go => 8080,
            Language::Node => 3000,
            Language::Python => 8000,
        }
    }
}

/// A serving entity: an application service or a MySQL / Redis server.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub id: EntityId,
    pub role: Role,
    /// Service name, or `mysqld@ip:3306` for servers.
    pub name: String,
    /// `java`, `nodejs`, `python`, `go` for services; `c` for servers.
    pub language: &'static str,
    /// `java`, `node`, `mysqld`… (a Go binary's name truncated to 15 bytes, like `comm`).
    pub process_name: String,
    pub port: u16,
    /// Instances of a service (empty for servers).
    pub instances: Range<usize>,
    /// The host of a server (unused for services).
    pub host: usize,
    /// Own processing time of a service, median ms at mean load.
    pub self_median_ms: f64,
    /// Log-spread of the node's own latency (of every shape, for servers).
    pub sigma: f64,
    pub base_error_ratio: f64,
    /// Mean requests per minute over a week (derived from the call graph).
    pub expected_requests: f64,
    /// Gateways: mean external requests per minute.
    pub external_requests: f64,
    /// Gateways: two slow benign traffic waves, (period minutes, phase) each.
    pub waves: [(f64, f64); 2],
    /// Endpoints of a service or statement shapes of a server, into `Layout::ops`.
    pub ops: Range<usize>,
    /// Calls this node makes, into `Layout::edges` (sorted by client).
    pub out_edges: Range<usize>,
    /// Normal latency profile of a server, into `Layout::profiles`.
    pub profile: usize,
    /// On-CPU stacks of a service's processes with their weights.
    pub stacks: Vec<(String, f64)>,
    /// One caller, for examples.
    pub a_caller: Option<usize>,
}

impl Node {
    pub fn protocol(&self) -> L7Protocol {
        match self.role {
            Role::Mysql => L7Protocol::Mysql,
            Role::Redis => L7Protocol::Redis,
            _ => L7Protocol::Http,
        }
    }
}

/// An endpoint of a service or a statement shape / command of a server.
#[derive(Clone, Debug)]
pub(crate) struct Operation {
    pub request_type: String,
    /// URL path, SQL shape or `COMMAND key:pattern`.
    pub resource: String,
    /// Share of the server's executions (servers only).
    pub share: f64,
    /// Median latency at normal load, ms (servers only).
    pub median_ms: f64,
}

/// A call edge client → server.
#[derive(Clone, Debug)]
pub(crate) struct Edge {
    pub client: usize,
    pub server: usize,
    /// Calls per client request (fractional: some requests call conditionally).
    pub calls: f64,
    /// Network round trip added to every call, ms.
    pub rtt_ms: f64,
    /// The server endpoint the calls hit (service servers), into `Layout::ops`.
    pub op: usize,
}

/// One running copy of a service, in its own container on a host.
#[derive(Clone, Debug)]
pub(crate) struct Instance {
    pub service: usize,
    pub host: usize,
    /// `<service>-<n>`: instance and container name.
    pub name: String,
    pub instance_id: EntityId,
    pub container_id: EntityId,
    pub pid: u32,
    pub cpu_limit: f64,
    pub memory_limit: f64,
    pub base_memory: f64,
    pub idle_cores: f64,
    /// CPU core-seconds per request served.
    pub core_seconds_per_request: f64,
    /// Fraction of the service's requests this instance serves.
    pub share: f64,
}

/// A machine.
#[derive(Clone, Debug)]
pub(crate) struct Host {
    pub id: EntityId,
    pub ip: Ipv4Addr,
    /// Mean TCP retransmits per minute at mean load.
    pub base_retransmits: f64,
}

/// The latency distribution of a server at unit scale: per-shape multipliers of
/// the shapes' medians, with the mixture's moments and quantiles precomputed.
#[derive(Clone, Debug)]
pub(crate) struct ServerProfile {
    pub factors: Vec<f64>,
    pub mean: f64,
    pub variance: f64,
    pub quantiles: [f64; 3],
}

/// What an entity id in the estate refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ref {
    Node(usize),
    Instance(usize),
    Host(usize),
    Endpoint,
}

/// Everything structural about the estate.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub nodes: Vec<Node>,
    pub ops: Vec<Operation>,
    pub edges: Vec<Edge>,
    pub instances: Vec<Instance>,
    pub hosts: Vec<Host>,
    pub profiles: Vec<ServerProfile>,
    pub index: HashMap<EntityId, Ref>,
    pub topology: Topology,
}

const DOMAINS: [&str; 40] = [
    "order",
    "payment",
    "user",
    "cart",
    "catalog",
    "inventory",
    "search",
    "shipping",
    "review",
    "promotion",
    "account",
    "pricing",
    "notification",
    "recommendation",
    "checkout",
    "auth",
    "profile",
    "wishlist",
    "coupon",
    "invoice",
    "refund",
    "loyalty",
    "address",
    "media",
    "report",
    "billing",
    "ledger",
    "fraud",
    "delivery",
    "warehouse",
    "supplier",
    "merchant",
    "store",
    "message",
    "feed",
    "comment",
    "rating",
    "tax",
    "currency",
    "session",
];
const GATEWAYS: [&str; 4] = [
    "gateway",
    "mobile-gateway",
    "partner-gateway",
    "admin-gateway",
];
const TABLES: [&str; 12] = [
    "orders",
    "users",
    "payments",
    "inventory",
    "carts",
    "products",
    "shipments",
    "invoices",
    "coupons",
    "reviews",
    "accounts",
    "sessions",
];
/// SQL shape templates: (verb, text with `{t}` for the table, median ms).
const SQL_SHAPES: [(&str, &str, f64); 6] = [
    ("SELECT", "SELECT * FROM {t} WHERE id = ?", 0.8),
    (
        "SELECT",
        "SELECT id, status, amount FROM {t} WHERE user_id = ? ORDER BY created_at DESC LIMIT ?",
        2.5,
    ),
    (
        "UPDATE",
        "UPDATE {t} SET status = ?, updated_at = ? WHERE id = ?",
        1.6,
    ),
    (
        "INSERT",
        "INSERT INTO {t} (user_id, amount, status, created_at) VALUES (?, ?, ?, ?)",
        1.3,
    ),
    (
        "SELECT",
        "SELECT COUNT(*) FROM {t} WHERE created_at > ? AND status = ?",
        4.0,
    ),
    (
        "DELETE",
        "DELETE FROM {t} WHERE expires_at < ? LIMIT ?",
        2.0,
    ),
];
/// Redis command templates: (command, key pattern, median ms).
const REDIS_SHAPES: [(&str, &str, f64); 7] = [
    ("GET", "session:?", 0.18),
    ("HGETALL", "cart:?", 0.3),
    ("SET", "rate_limit:?", 0.2),
    ("MGET", "product:?", 0.35),
    ("ZRANGE", "leaderboard:?", 0.4),
    ("INCR", "counter:?", 0.15),
    ("EXPIRE", "token:?", 0.15),
];
const SQL_SIGMA: f64 = 0.55;
const REDIS_SIGMA: f64 = 0.45;

/// `base` for the first use of a name, `base-2`, `base-3`… after: readable and unique.
fn numbered(base: String, pass: usize) -> String {
    if pass == 0 {
        base
    } else {
        format!("{base}-{}", pass + 1)
    }
}

fn host_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, (index / 250) as u8, (index % 250 + 1) as u8)
}

/// The profile of a server whose shape medians are multiplied by `factors`.
pub(crate) fn server_profile(ops: &[Operation], sigma: f64, factors: Vec<f64>) -> ServerProfile {
    let components: Vec<Component> = ops
        .iter()
        .zip(&factors)
        .map(|(op, factor)| Component {
            weight: op.share,
            mu: (op.median_ms * factor).ln(),
            sigma,
            shift_ms: 0.0,
        })
        .collect();
    let (mean, second) = mixture_moments(&components);
    ServerProfile {
        quantiles: mixture_quantiles(&components),
        mean,
        variance: (second - mean * mean).max(0.0),
        factors,
    }
}

fn stacks_for(language: Language, service: &str, process: &str) -> Vec<(String, f64)> {
    let class = service.replace('-', "_");
    let stacks = match language {
        Language::Java => vec![
            (format!("{process};java.lang.Thread.run;org.eclipse.jetty.server.HttpChannel.handle;com.shop.{class}.Controller.handle;com.fasterxml.jackson.databind.ObjectMapper.writeValue"), 0.4),
            (format!("{process};java.lang.Thread.run;com.zaxxer.hikari.pool.HikariPool.getConnection;com.mysql.cj.NativeSession.execSQL"), 0.2),
            (format!("{process};GCTaskThread::run;G1ParEvacuateFollowersClosure::do_void"), 0.25),
            (format!("{process};java.lang.Thread.run;io.lettuce.core.RedisChannelHandler.dispatch"), 0.15),
        ],
        Language::Node => vec![
            (format!("{process};node::Start;uv_run;uv__io_poll;{class}::handleRequest;JSON.stringify"), 0.45),
            (format!("{process};node::Start;uv_run;uv__io_poll;{class}::router;express::Layer.handle"), 0.3),
            (format!("{process};v8::internal::Heap::CollectGarbage;v8::internal::Scavenger::Process"), 0.25),
        ],
        Language::Python => vec![
            (format!("{process};_PyEval_EvalFrameDefault;gunicorn.workers.sync:handle;{class}.views:dispatch;json.encoder:encode"), 0.5),
            (format!("{process};_PyEval_EvalFrameDefault;{class}.db:query;pymysql.connections:_read_packet"), 0.3),
            (format!("{process};_PyEval_EvalFrameDefault;gc_collect_main"), 0.2),
        ],
        Language::Go => vec![
            (format!("{process};runtime.goexit;net/http.(*conn).serve;main.(*{class}Handler).ServeHTTP;encoding/json.Marshal"), 0.45),
            (format!("{process};runtime.goexit;database/sql.(*DB).QueryContext;github.com/go-sql-driver/mysql.(*mysqlConn).readPacket"), 0.25),
            (format!("{process};runtime.gcBgMarkWorker;runtime.gcDrain;runtime.scanobject"), 0.3),
        ],
    };
    stacks
}

/// Builds the estate's structure. `config` must already be validated.
pub(crate) fn build(config: &SimConfig) -> Layout {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(config.seed ^ 0x6c61_796f_7574));
    let services = config.services;
    let gateways = (services / 40).max(1);
    let rest = services - gateways;
    let apis = if rest == 0 {
        0
    } else {
        ((rest as f64 * 0.45).round() as usize).clamp(1, rest)
    };
    let workers = rest - apis;
    let mysqls = config.mysql_server_count();
    let redises = config.redis_server_count();
    let app_hosts = config.app_host_count();
    let per_service = config.instances_per_service as usize;

    let mut hosts: Vec<Host> = (0..app_hosts + mysqls + redises)
        .map(|index| Host {
            id: EntityId::new(EntityKind::Host, &format!("host-{}", index + 1)),
            ip: host_ip(index),
            base_retransmits: 0.0,
        })
        .collect();

    let mut nodes = Vec::with_capacity(services + mysqls + redises);
    let mut ops = Vec::new();
    let mut instances = Vec::with_capacity(services * per_service);
    let mut profiles = Vec::new();

    for index in 0..services {
        let (role, name) = if index < gateways {
            let base = GATEWAYS[index % GATEWAYS.len()].to_owned();
            (Role::Gateway, numbered(base, index / GATEWAYS.len()))
        } else if index < gateways + apis {
            let ordinal = index - gateways;
            let base = format!("{}-api", DOMAINS[ordinal % DOMAINS.len()]);
            (Role::Api, numbered(base, ordinal / DOMAINS.len()))
        } else {
            let ordinal = index - gateways - apis;
            let suffix = if ordinal % 3 == 2 {
                "service"
            } else {
                "worker"
            };
            let base = format!("{}-{suffix}", DOMAINS[(ordinal * 7 + 3) % DOMAINS.len()]);
            (Role::Worker, numbered(base, ordinal / DOMAINS.len()))
        };
        let language = Language::pick(rng.gen());
        let process_name = match language {
            Language::Java => "java".to_owned(),
            Language::Node => "node".to_owned(),
            Language::Python => "python3".to_owned(),
            Language::Go => name.chars().take(15).collect(),
        };
        let domain = name.split('-').next().unwrap_or("app").to_owned();
        let ops_start = ops.len();
        let endpoints: Vec<(&str, String)> = match role {
            Role::Gateway => vec![("GET", "/api/*".to_owned()), ("POST", "/api/*".to_owned())],
            Role::Api => vec![
                ("GET", format!("/api/v1/{domain}s/{{id}}")),
                ("POST", format!("/api/v1/{domain}s")),
                ("GET", format!("/api/v1/{domain}s")),
            ],
            _ => vec![
                ("POST", format!("/internal/{domain}/process")),
                ("GET", format!("/internal/{domain}/status")),
            ],
        };
        for (method, path) in endpoints {
            ops.push(Operation {
                request_type: method.to_owned(),
                resource: path,
                share: 0.0,
                median_ms: 0.0,
            });
        }
        let self_median_ms = match role {
            Role::Gateway => rng.gen_range(1.5..4.0),
            Role::Api => rng.gen_range(4.0..12.0),
            _ => rng.gen_range(3.0..10.0),
        };
        let first_instance = instances.len();
        let base_host = rng.gen_range(0..app_hosts);
        for ordinal in 0..per_service {
            let instance_name = format!("{name}-{}", ordinal + 1);
            let cpu_limit = if role == Role::Gateway { 2.0 } else { 1.0 };
            let memory_limit =
                if language == Language::Java { 2.0 } else { 1.0 } * 1024.0 * 1024.0 * 1024.0;
            instances.push(Instance {
                service: index,
                host: (base_host + ordinal) % app_hosts,
                instance_id: EntityId::new(EntityKind::Instance, &instance_name),
                container_id: EntityId::new(EntityKind::Container, &instance_name),
                name: instance_name,
                pid: 1000 + (rng.gen::<u32>() % 60_000),
                cpu_limit,
                memory_limit,
                base_memory: memory_limit * rng.gen_range(0.3..0.5),
                idle_cores: rng.gen_range(0.01..0.04),
                core_seconds_per_request: 0.0,
                share: rng.gen_range(0.9..1.1),
            });
        }
        let share_total: f64 = instances[first_instance..].iter().map(|i| i.share).sum();
        for instance in &mut instances[first_instance..] {
            instance.share /= share_total;
        }
        let stacks = stacks_for(language, &name, &process_name);
        nodes.push(Node {
            id: EntityId::new(EntityKind::Service, &name),
            role,
            name,
            language: language.as_str(),
            process_name,
            port: language.port(),
            instances: first_instance..instances.len(),
            host: 0,
            self_median_ms,
            sigma: rng.gen_range(0.45..0.65),
            base_error_ratio: rng.gen_range(0.0002..0.0015),
            expected_requests: 0.0,
            external_requests: if role == Role::Gateway {
                config.gateway_requests_per_minute * rng.gen_range(0.6..1.4)
            } else {
                0.0
            },
            waves: [
                (
                    rng.gen_range(40.0..90.0),
                    rng.gen_range(0.0..std::f64::consts::TAU),
                ),
                (
                    rng.gen_range(150.0..400.0),
                    rng.gen_range(0.0..std::f64::consts::TAU),
                ),
            ],
            ops: ops_start..ops.len(),
            out_edges: 0..0,
            profile: 0,
            stacks,
            a_caller: None,
        });
    }

    for server in 0..mysqls + redises {
        let is_mysql = server < mysqls;
        let host = app_hosts + server;
        let ip = hosts[host].ip;
        let (role, process, port, sigma) = if is_mysql {
            (Role::Mysql, "mysqld", 3306, SQL_SIGMA)
        } else {
            (Role::Redis, "redis-server", 6379, REDIS_SIGMA)
        };
        let name = format!("{process}@{ip}:{port}");
        let ops_start = ops.len();
        let shape_count = rng.gen_range(3..=5usize);
        let mut weights: Vec<f64> = (0..shape_count).map(|_| rng.gen_range(0.5..1.5)).collect();
        // One dominant shape, as in real workloads.
        weights[0] *= 2.0;
        let total: f64 = weights.iter().sum();
        if is_mysql {
            let first_table = rng.gen_range(0..TABLES.len());
            let mut used = Vec::new();
            while used.len() < shape_count {
                let candidate = (
                    rng.gen_range(0..SQL_SHAPES.len()),
                    (first_table + rng.gen_range(0..2)) % TABLES.len(),
                );
                if !used.contains(&candidate) {
                    used.push(candidate);
                }
            }
            for ((shape, table), weight) in used.into_iter().zip(&weights) {
                let (verb, text, median) = SQL_SHAPES[shape];
                ops.push(Operation {
                    request_type: verb.to_owned(),
                    resource: text.replace("{t}", TABLES[table]),
                    share: weight / total,
                    median_ms: median * rng.gen_range(0.7..1.4),
                });
            }
        } else {
            let mut used = Vec::new();
            while used.len() < shape_count {
                let candidate = rng.gen_range(0..REDIS_SHAPES.len());
                if !used.contains(&candidate) {
                    used.push(candidate);
                }
            }
            for (shape, weight) in used.into_iter().zip(&weights) {
                let (command, key, median) = REDIS_SHAPES[shape];
                ops.push(Operation {
                    request_type: command.to_owned(),
                    resource: format!("{command} {key}"),
                    share: weight / total,
                    median_ms: median * rng.gen_range(0.8..1.25),
                });
            }
        }
        let profile = profiles.len();
        let server_ops = &ops[ops_start..];
        profiles.push(server_profile(
            server_ops,
            sigma,
            vec![1.0; server_ops.len()],
        ));
        nodes.push(Node {
            id: EntityId::new(role_kind(role), &name),
            role,
            name,
            language: "c",
            process_name: process.to_owned(),
            port,
            instances: 0..0,
            host,
            self_median_ms: 0.0,
            sigma,
            base_error_ratio: rng.gen_range(0.00005..0.0003),
            expected_requests: 0.0,
            external_requests: 0.0,
            waves: [(1.0, 0.0); 2],
            ops: ops_start..ops.len(),
            out_edges: 0..0,
            profile,
            stacks: Vec::new(),
            a_caller: None,
        });
    }

    // Call graph: every edge goes from a lower to a higher node index, so index
    // order is a topological order (gateways → APIs → workers → servers).
    let mut raw: Vec<(usize, usize, f64)> = Vec::new();
    let add = |raw: &mut Vec<(usize, usize, f64)>, client: usize, server: usize, calls: f64| {
        if client < server {
            raw.push((client, server, calls));
        }
    };
    // Gateways route each request to one API: weights normalised per gateway below.
    for ordinal in 0..apis {
        let api = gateways + ordinal;
        add(&mut raw, ordinal % gateways, api, rng.gen_range(0.5..1.5));
        if gateways > 1 && rng.gen_bool(0.15) {
            add(
                &mut raw,
                (ordinal + 1) % gateways,
                api,
                rng.gen_range(0.2..0.6),
            );
        }
    }
    let mut gateway_totals = vec![0.0; gateways];
    for &(client, _, calls) in &raw {
        gateway_totals[client] += calls;
    }
    for edge in &mut raw {
        edge.2 /= gateway_totals[edge.0].max(1e-9);
    }
    for ordinal in 0..workers {
        let worker = gateways + apis + ordinal;
        let api = gateways + (ordinal * apis / workers.max(1)).min(apis.saturating_sub(1));
        add(&mut raw, api, worker, rng.gen_range(0.4..1.5));
        if rng.gen_bool(0.3) {
            if ordinal > 0 && rng.gen_bool(0.5) {
                let earlier = gateways + apis + rng.gen_range(ordinal.saturating_sub(5)..ordinal);
                add(&mut raw, earlier, worker, rng.gen_range(0.3..1.0));
            } else {
                add(
                    &mut raw,
                    gateways + rng.gen_range(0..apis),
                    worker,
                    rng.gen_range(0.2..0.8),
                );
            }
        }
    }
    let candidates: Vec<usize> = if rest > 0 {
        (gateways..services).collect()
    } else {
        (0..gateways).collect()
    };
    let near = |rng: &mut ChaCha8Rng, ordinal: usize, count: usize| -> usize {
        let centre = ordinal * count / candidates.len();
        (centre + count + rng.gen_range(0..3) - 1) % count
    };
    let mut has_caller = vec![false; mysqls + redises];
    for (ordinal, &client) in candidates.iter().enumerate() {
        let role = nodes[client].role;
        if mysqls > 0 {
            let (probability, calls) = match role {
                Role::Worker => (0.75, rng.gen_range(1.0..3.5)),
                Role::Api => (0.35, rng.gen_range(1.0..2.0)),
                _ => (1.0, 1.0),
            };
            if rng.gen_bool(probability) {
                let server = near(&mut rng, ordinal, mysqls);
                has_caller[server] = true;
                add(&mut raw, client, services + server, calls);
            }
        }
        if redises > 0 {
            let (probability, calls) = match role {
                Role::Api => (0.7, rng.gen_range(2.0..5.0)),
                Role::Worker => (0.3, rng.gen_range(1.0..3.0)),
                _ => (1.0, 2.0),
            };
            if rng.gen_bool(probability) {
                let server = mysqls + near(&mut rng, ordinal, redises);
                has_caller[server] = true;
                add(&mut raw, client, services + server, calls);
            }
        }
    }
    for (server, called) in has_caller.iter().enumerate() {
        if !called {
            let count = if server < mysqls { mysqls } else { redises };
            let ordinal = if server < mysqls {
                server
            } else {
                server - mysqls
            };
            let client = candidates[ordinal * candidates.len() / count];
            add(&mut raw, client, services + server, rng.gen_range(1.0..2.5));
        }
    }
    raw.sort_by_key(|&(client, server, _)| (client, server));
    raw.dedup_by(|later, earlier| later.0 == earlier.0 && later.1 == earlier.1);

    let mut edges = Vec::with_capacity(raw.len());
    for (client, server, calls) in raw {
        let target = &nodes[server];
        let op = if target.role.is_server() {
            target.ops.start
        } else {
            target.ops.start + rng.gen_range(0..target.ops.len())
        };
        edges.push(Edge {
            client,
            server,
            calls,
            rtt_ms: rng.gen_range(0.08..0.25),
            op,
        });
    }
    let mut cursor = 0;
    for (index, node) in nodes.iter_mut().enumerate() {
        let start = cursor;
        while cursor < edges.len() && edges[cursor].client == index {
            cursor += 1;
        }
        node.out_edges = start..cursor;
    }

    // Expected traffic, in topological (index) order.
    for index in 0..nodes.len() {
        if nodes[index].role == Role::Gateway {
            nodes[index].expected_requests = nodes[index].external_requests;
        }
        let load = nodes[index].expected_requests;
        for edge in nodes[index].out_edges.clone() {
            let server = edges[edge].server;
            nodes[server].expected_requests += load * edges[edge].calls;
            if nodes[server].a_caller.is_none() {
                nodes[server].a_caller = Some(index);
            }
        }
    }
    for instance in &mut instances {
        let node = &nodes[instance.service];
        let requests_per_second = (node.expected_requests * instance.share / 60.0).max(1e-3);
        let mean_cores = rng.gen_range(0.12..0.3) * instance.cpu_limit.min(1.5);
        instance.core_seconds_per_request =
            (mean_cores - instance.idle_cores).max(0.01) / requests_per_second;
        hosts[instance.host].base_retransmits +=
            0.6 + node.expected_requests * instance.share / 2000.0;
    }
    for node in nodes.iter().filter(|n| n.role.is_server()) {
        hosts[node.host].base_retransmits += 1.0 + node.expected_requests / 3000.0;
    }

    let (topology, index) = topology(&nodes, &ops, &edges, &instances, &hosts);
    Layout {
        nodes,
        ops,
        edges,
        instances,
        hosts,
        profiles,
        index,
        topology,
    }
}

fn role_kind(role: Role) -> EntityKind {
    match role {
        Role::Mysql => EntityKind::Database,
        Role::Redis => EntityKind::Cache,
        _ => EntityKind::Service,
    }
}

/// The id of the endpoint `op` served by `node`: `endpoint:<server name> <shape>`.
pub(crate) fn endpoint_id(node: &Node, op: &Operation) -> EntityId {
    let shape = if node.role.is_server() {
        op.resource.clone()
    } else {
        format!("{} {}", op.request_type, op.resource)
    };
    EntityId::new(EntityKind::Endpoint, &format!("{} {shape}", node.name))
}

fn topology(
    nodes: &[Node],
    ops: &[Operation],
    edges: &[Edge],
    instances: &[Instance],
    hosts: &[Host],
) -> (Topology, HashMap<EntityId, Ref>) {
    let mut entities = Vec::new();
    let mut relations = Vec::new();
    let mut index = HashMap::new();
    let relate = |relations: &mut Vec<Relation>, from: &EntityId, to: &EntityId, kind| {
        relations.push(Relation {
            from: from.clone(),
            to: to.clone(),
            kind,
        });
    };
    for (position, host) in hosts.iter().enumerate() {
        index.insert(host.id.clone(), Ref::Host(position));
        entities.push(Entity::new(host.id.clone()).with("ip", host.ip.to_string()));
    }
    for (position, node) in nodes.iter().enumerate() {
        index.insert(node.id.clone(), Ref::Node(position));
        let mut entity = Entity::new(node.id.clone())
            .with("process_name", node.process_name.clone())
            .with("port", node.port.to_string())
            .with("role", node.role.as_str())
            .with("language", node.language);
        if node.role.is_server() {
            let host = &hosts[node.host];
            entity = entity.with("ip", host.ip.to_string()).with(
                "version",
                if node.role == Role::Mysql {
                    "8.0.36"
                } else {
                    "7.2.4"
                },
            );
            relate(&mut relations, &node.id, &host.id, RelationKind::RunsOn);
        }
        entities.push(entity);
        for op in &ops[node.ops.clone()] {
            let endpoint = endpoint_id(node, op);
            index.insert(endpoint.clone(), Ref::Endpoint);
            entities.push(
                Entity::new(endpoint.clone())
                    .with("protocol", node.protocol().name())
                    .with("request_type", op.request_type.clone())
                    .with("resource", op.resource.clone()),
            );
            relate(&mut relations, &node.id, &endpoint, RelationKind::Exposes);
        }
        for edge in &edges[node.out_edges.clone()] {
            relate(
                &mut relations,
                &node.id,
                &nodes[edge.server].id,
                RelationKind::Calls,
            );
        }
    }
    for (position, instance) in instances.iter().enumerate() {
        let node = &nodes[instance.service];
        let host = &hosts[instance.host];
        let ip = host.ip.to_string();
        index.insert(instance.instance_id.clone(), Ref::Instance(position));
        index.insert(instance.container_id.clone(), Ref::Instance(position));
        entities.push(
            Entity::new(instance.instance_id.clone())
                .with("ip", ip.clone())
                .with("port", node.port.to_string())
                .with("pid", instance.pid.to_string())
                .with("process_name", node.process_name.clone())
                .with("service", node.name.clone()),
        );
        let container_hash = mix(position as u64 ^ 0x636f_6e74) as u128 * 0x1_0000_0000_0000_0000
            + mix(instance.pid as u64 ^ position as u64) as u128;
        entities.push(
            Entity::new(instance.container_id.clone())
                .with("ip", ip)
                .with("cpu_limit_cores", format!("{}", instance.cpu_limit))
                .with(
                    "memory_limit_bytes",
                    format!("{}", instance.memory_limit as u64),
                )
                .with(
                    "image",
                    format!(
                        "registry.local/{}:1.{}.{}",
                        node.name,
                        position % 7,
                        position % 13
                    ),
                )
                .with(
                    "container_id",
                    format!("{container_hash:032x}{container_hash:032x}"),
                )
                .with("process_name", node.process_name.clone()),
        );
        relate(
            &mut relations,
            &instance.instance_id,
            &node.id,
            RelationKind::InstanceOf,
        );
        relate(
            &mut relations,
            &instance.instance_id,
            &instance.container_id,
            RelationKind::RunsOn,
        );
        relate(
            &mut relations,
            &instance.container_id,
            &host.id,
            RelationKind::RunsOn,
        );
    }
    let mut topology = Topology {
        entities,
        relations,
    };
    topology.normalise();
    (topology, index)
}
