//! Anomaly detection: pure, deterministic functions from telemetry series to
//! anomalies with evidence.
//!
//! Owns the detectors (baseline deviation, persistent level shifts, multivariate
//! outliers, slow statements, SLO burn, memory growth) and the noise guards.
//! Does not own fetching: callers read series through `TelemetrySource` and pass
//! them in. No IO, no clock, no randomness without a seed.
