//! The HTTP API and web pages.
//!
//! Owns every HTTP and JSON wire shape Vigil speaks: alert webhooks
//! (Alertmanager, Grafana, DeepFlow, generic), the chat endpoint, reports and
//! pages, OpenAPI, metrics and health.
//! Does not own analysis or storage: it calls into the crates that do.
