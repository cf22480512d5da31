//! Playbooks: declarative patrols (YAML), their validation and their evaluation.
//!
//! Owns the playbook format, the built-in catalogue of checks, and evaluating a
//! playbook through `&dyn TelemetrySource` into findings.
//! Does not own when playbooks run (the scheduler), how findings are delivered
//! (notifications) or how they are stored.
