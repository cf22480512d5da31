//! `vigil-estate`: the services of the chaos end-to-end test (tests/chaos_e2e.rs).
//!
//! `serve` runs one HTTP service whose `GET /` does its real work: a MariaDB
//! query, a Redis round trip and calls to the services downstream of it, and
//! answers 502 when one of them fails. `load` drives a service at a steady
//! rate. Both are ordinary processes, so vigil-agent sees them the way it sees
//! any service on a host.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use clap::{Parser, Subcommand};
use mysql_async::prelude::Queryable;

#[derive(Parser)]
#[command(
    name = "vigil-estate",
    about = "Services of Vigil's chaos end-to-end test"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one service.
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// MariaDB/MySQL URL (`mysql://user:pass@host:port/db`); each request
        /// reads one row of the `orders` table by primary key.
        #[arg(long)]
        mysql: Option<String>,
        /// Redis URL; each request reads and writes one cart key.
        #[arg(long)]
        redis: Option<String>,
        /// Downstream service URLs called on every request.
        #[arg(long = "call")]
        calls: Vec<String>,
    },
    /// Create and fill the `orders` table the services read.
    Seed {
        /// MariaDB/MySQL URL.
        #[arg(long)]
        mysql: String,
        /// Rows to insert.
        #[arg(long, default_value_t = 1000)]
        rows: u32,
    },
    /// Send requests to a URL at a steady rate until killed.
    Load {
        /// Target URL.
        #[arg(long)]
        url: String,
        /// Requests per second.
        #[arg(long, default_value_t = 20)]
        rate: u32,
    },
}

struct Service {
    mysql: Option<mysql_async::Pool>,
    redis: Option<redis::aio::MultiplexedConnection>,
    http: reqwest::Client,
    calls: Vec<String>,
}

impl Service {
    async fn work(&self) -> Result<()> {
        let key = rand_key();
        if let Some(pool) = &self.mysql {
            let mut conn = pool.get_conn().await?;
            let _: Option<(u32, String)> = conn
                .exec_first(
                    "SELECT id, customer FROM orders WHERE id = ?",
                    (key % 1000 + 1,),
                )
                .await?;
        }
        if let Some(redis) = &self.redis {
            let mut redis = redis.clone();
            let cart = format!("cart:{}", key % 500);
            let _: () = redis::cmd("SET")
                .arg(&cart)
                .arg(key)
                .query_async(&mut redis)
                .await?;
            let _: Option<String> = redis::cmd("GET").arg(&cart).query_async(&mut redis).await?;
        }
        for url in &self.calls {
            let response = self.http.get(url).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{url} answered {}",
                response.status()
            );
        }
        Ok(())
    }
}

/// A cheap per-request key: the low bits of the clock.
fn rand_key() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_micros()))
        .unwrap_or(0)
}

async fn handle(State(service): State<Arc<Service>>) -> (StatusCode, String) {
    match service.work().await {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(err) => (StatusCode::BAD_GATEWAY, format!("{err:#}\n")),
    }
}

async fn serve(
    listen: SocketAddr,
    mysql: Option<String>,
    redis_url: Option<String>,
    calls: Vec<String>,
) -> Result<()> {
    let mysql = match mysql {
        Some(url) => Some(mysql_async::Pool::from_url(url.as_str()).context("--mysql")?),
        None => None,
    };
    let redis = match redis_url {
        Some(url) => {
            let client = redis::Client::open(url.as_str()).context("--redis")?;
            Some(client.get_multiplexed_async_connection().await?)
        }
        None => None,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let service = Arc::new(Service {
        mysql,
        redis,
        http,
        calls,
    });
    let app = Router::new()
        .route("/", get(handle))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(service);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn seed(url: &str, rows: u32) -> Result<()> {
    let pool = mysql_async::Pool::from_url(url).context("--mysql")?;
    let mut conn = pool.get_conn().await?;
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS orders (id INT UNSIGNED PRIMARY KEY, customer VARCHAR(64) NOT NULL) ENGINE=InnoDB",
    )
    .await?;
    conn.query_drop("DELETE FROM orders").await?;
    conn.exec_batch(
        "INSERT INTO orders (id, customer) VALUES (?, ?)",
        (1..=rows).map(|id| (id, format!("customer-{}", id % 97))),
    )
    .await?;
    drop(conn);
    pool.disconnect().await?;
    Ok(())
}

async fn load(url: String, rate: u32) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let http = http.clone();
        let url = url.clone();
        // Failures are the point of some experiments: the services' own logs
        // and the agent record them, the load generator just keeps going.
        tokio::spawn(async move { http.get(&url).send().await.map(|r| r.status()) });
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Serve {
            listen,
            mysql,
            redis,
            calls,
        } => serve(listen, mysql, redis, calls).await,
        Command::Seed { mysql, rows } => seed(&mysql, rows).await,
        Command::Load { url, rate } => load(url, rate).await,
    }
}
