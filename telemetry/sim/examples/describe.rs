//! Prints a small estate, its planted faults and each serving entity's request
//! metrics at the middle of every fault, next to the same entity an hour before:
//! `cargo run --release -p vigil-sim --example describe -- [seed] [services]`.

use vigil_sim::{Estate, FaultSpec, SimConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(7);
    let services: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(12);
    let estate = Estate::new(SimConfig {
        seed,
        services,
        faults: FaultSpec::random_catalogue(seed, 1440),
        ..SimConfig::default()
    })?;
    for relation in &estate.topology().relations {
        if relation.kind == vigil_model::RelationKind::Calls {
            println!("{} -> {}", relation.from, relation.to);
        }
    }
    for fault in estate.faults() {
        println!(
            "\n{} at {} [{}, {}): {}",
            fault.kind, fault.root_cause, fault.window.start, fault.window.end, fault.detail
        );
        let middle = fault
            .window
            .start
            .plus_secs((fault.window.end.secs() - fault.window.start.secs()) / 2);
        let before = fault.window.start.plus_secs(-3600);
        for entity in estate.serving_entities() {
            let (Some(now), Some(then)) =
                (estate.truth(entity, middle), estate.truth(entity, before))
            else {
                continue;
            };
            println!(
                "  {entity:45} req {:6.0}→{:6.0}  err {:5.2}%→{:5.2}%  mean {:7.2}→{:7.2}  p99 {:7.2}→{:7.2} ms",
                then.requests,
                now.requests,
                100.0 * then.errors / then.requests.max(1.0),
                100.0 * now.errors / now.requests.max(1.0),
                then.latency_mean_ms,
                now.latency_mean_ms,
                then.latency_p99_ms,
                now.latency_p99_ms
            );
        }
    }
    Ok(())
}
