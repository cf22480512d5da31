//! The simulated estate: a deterministic, seeded microservice estate with
//! injected faults and their ground truth.
//!
//! Owns generating topology, per-minute telemetry and raw request records, and
//! the fault catalogue's effects and propagation.
//! Does not own storage: it produces model values that the stores write.
