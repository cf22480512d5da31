//! ClickHouse: reads DeepFlow 6.6 tables and Vigil's own; DDL and migrations.
