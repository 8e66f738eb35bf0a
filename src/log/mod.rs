//! The worker's log: `tracing` spans (round › link › batch › request, or link › pull ›
//! request) and events, written to the server log as `pg_syncbridge: link crm: batch 12: ...`
//! at the level `syncbridge.log_level` asks for.
//!
//! Only the worker installs the subscriber ([`install`]). Ordinary backends have none, so
//! events of code they share with the worker (claim and settle in pg_tests, capture
//! triggers) are dropped there. Lines of the worker's main thread go out at once; those of
//! the transport's threads, which must never call into PostgreSQL, wait in a bounded queue
//! that the main thread empties every round ([`drain`]).
//!
//! Warnings go out as WARNING; lines below go out as LOG, so that the server's own
//! `log_min_messages` does not hide what `syncbridge.log_level` asked for. Lifecycle lines
//! (worker started, stopped, settings reloaded) do not pass through here: they are always
//! written.

mod layer;
pub mod line;

pub use line::Level;

use layer::{LineLayer, Shared};
use std::sync::{Arc, OnceLock};
use tracing_subscriber::layer::SubscriberExt;

/// Lines the transport's threads may queue between two rounds; more are dropped and counted.
const QUEUE_LINES: usize = 4096;

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// Installs the log for this process, with the calling thread as its main thread. Called
/// once, by the worker, on its main thread.
pub fn install(threshold: Level) {
    let shared = Arc::new(Shared::new(std::thread::current().id(), threshold, QUEUE_LINES));
    let subscriber = tracing_subscriber::registry().with(LineLayer::new(shared.clone(), write));
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        let _ = SHARED.set(shared);
    }
}

/// Follows a new `syncbridge.log_level` (after a reload).
pub fn set_level(threshold: Level) {
    if let Some(shared) = SHARED.get() {
        shared.set_threshold(threshold);
    }
}

/// Writes the lines the transport's threads queued, and how many were dropped. Main thread
/// only.
pub fn drain() {
    let Some(shared) = SHARED.get() else { return };
    let (lines, dropped) = shared.drain();
    for (level, text) in lines {
        write(level, &text);
    }
    if dropped > 0 {
        write(Level::Warning, &format!("pg_syncbridge: {dropped} log lines of the HTTP threads dropped (queue full)"));
    }
}

fn write(level: Level, text: &str) {
    if level == Level::Warning {
        pgrx::warning!("{text}");
    } else {
        pgrx::log!("{text}");
    }
}
