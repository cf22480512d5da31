//! Measures how fast the simulator generates batches:
//! `cargo run --release -p vigil-sim --example throughput -- [services] [minutes] [chunk]`.

use std::time::Instant;

use vigil_sim::{Estate, FaultSpec, SimConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let services: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let minutes: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1440);
    let chunk: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(60);
    let built = Instant::now();
    let estate = Estate::new(SimConfig {
        services,
        minutes,
        faults: FaultSpec::random_catalogue(1, minutes),
        ..SimConfig::default()
    })?;
    println!(
        "built {} entities, {} relations in {:.2?}",
        estate.topology().entities.len(),
        estate.topology().relations.len(),
        built.elapsed()
    );
    let started = Instant::now();
    let (mut batches, mut points) = (0usize, 0usize);
    for batch in estate.batches(chunk) {
        batches += 1;
        points += batch.point_count();
    }
    let elapsed = started.elapsed();
    println!(
        "{batches} batches, {points} points in {elapsed:.2?} ({:.1} M points/s)",
        points as f64 / elapsed.as_secs_f64() / 1e6
    );
    Ok(())
}
