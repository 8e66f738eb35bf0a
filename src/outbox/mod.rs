//! The outbox: the durable queue between capture (and inbound apply, which queues writebacks
//! and reflections) and the worker. `enqueue` writes keys into `syncbridge.outbox` at commit;
//! `wake` sets the latch of the database's worker right after such a commit. Both sides
//! depend on this room; it depends on neither.

pub mod enqueue;
pub mod wake;

/// Registers the pre-commit write and the worker table in shared memory. Called from
/// `_PG_init`, before the workers are registered.
pub fn init() {
    wake::init();
    enqueue::init();
}
