//! Observability that needs Rust: `syncbridge.explain()`. (The views, counters and
//! `metrics()` are SQL: sql/status.sql. Worker log lines: worker::engine::say.)

mod explain;
