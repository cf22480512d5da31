//! `vigil db …`: schema migrations.

use clap::Subcommand;
use vigil_model::Timestamp;

use crate::config::Config;
use crate::wiring;

/// Database schema tools.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending schema migrations to the embedded store and, when configured, ClickHouse.
    Migrate,
    /// List the known ClickHouse migrations.
    Migrations,
    /// Delete embedded telemetry older than `store.embedded.retention_days` (and old reports).
    Prune,
}

/// Runs a `db` subcommand.
pub async fn run(config: &Config, command: DbCommand) -> anyhow::Result<()> {
    match command {
        DbCommand::Migrate => {
            // Opening the embedded store applies its migrations.
            wiring::open_embedded(&config.store.embedded).await?;
            println!(
                "embedded store {}: schema up to date",
                config.store.embedded.path.display()
            );
            match wiring::connect_clickhouse(config).await? {
                Some(store) => {
                    let report = store.migrate().await?;
                    for (version, description) in &report.applied {
                        println!("clickhouse: applied migration {version}: {description}");
                    }
                    println!(
                        "clickhouse: schema at version {} ({} already applied)",
                        report.current_version,
                        report.already_applied.len()
                    );
                }
                None => println!("clickhouse: not configured (store.clickhouse), nothing to do"),
            }
        }
        DbCommand::Prune => {
            let store = wiring::open_embedded(&config.store.embedded).await?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_secs())
                .unwrap_or(0);
            let now = Timestamp::from_secs(i64::try_from(now).unwrap_or(i64::MAX));
            let pruned = store.apply_retention(now).await?;
            println!(
                "embedded store {}: deleted {} series chunks, {} rows, {} topology entries, {} reports and runs older than {} days",
                config.store.embedded.path.display(),
                pruned.chunks,
                pruned.rows,
                pruned.topology,
                pruned.state,
                config.store.embedded.retention_days
            );
        }
        DbCommand::Migrations => {
            for migration in vigil_store::clickhouse::MIGRATIONS {
                println!("{:>4}  {}", migration.version, migration.description);
            }
        }
    }
    Ok(())
}
