//! Capture: the triggers that record user edits of a linked table.
//!
//! * `row` — BEFORE INSERT OR UPDATE OR DELETE FOR EACH ROW, on links with `track_columns`:
//!   stamps `_sync_last_touch` and `_sync_fingerprint` and decides whether the row changed.
//! * `statement` — AFTER INSERT / UPDATE / DELETE FOR EACH STATEMENT with transition tables,
//!   on links without tracking columns: the same decision from the old and new rows.
//! * `buffer` — both add keys to a per-transaction buffer that is written to the outbox once,
//!   at pre-commit (`outbox::enqueue`).
//!
//! * `ddl` — the event trigger that follows column renames of linked tables.
//!
//! Neither trigger calls the worker; the outbox is the only thing they share with it.

pub mod backfill;
pub mod buffer;
pub mod config;
pub mod ddl;
pub mod row;
pub mod statement;
mod trigger;
pub mod values;

/// Registers the cache invalidation callback. Called from `_PG_init`.
pub fn init() {
    config::init();
    buffer::init();
}
