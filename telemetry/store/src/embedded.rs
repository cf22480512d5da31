//! The embedded SQLite store: the default telemetry store and Vigil's state.
