//! Capture: the triggers that record user edits of a linked table.
//!
//! * `row` — BEFORE INSERT OR UPDATE FOR EACH ROW: stamps `_sync_last_touch` and
//!   `_sync_fingerprint` (only on links with `track_columns`).
//! * `statement` — AFTER INSERT / UPDATE / DELETE FOR EACH STATEMENT, with transition tables:
//!   decides which rows changed and writes their keys to the outbox, one insert per
//!   statement, through a cached plan.
//!
//! Neither trigger calls the worker; the outbox is the only thing they share with it.

pub mod config;
pub mod enqueue;
pub mod row;
pub mod statement;
mod trigger;
pub mod values;

/// Registers the cache invalidation callback. Called from `_PG_init`.
pub fn init() {
    config::init();
}
