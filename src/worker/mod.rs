//! The background worker: one per database named in `syncbridge.database`, registered when
//! the library is preloaded (`shared_preload_libraries = 'pg_syncbridge'`), restarted by the
//! postmaster after a crash. It shows in `pg_stat_activity` as backend type `pg_syncbridge`.
//!
//! Threads: the main thread does every SPI call and owns the latch; HTTP runs on a tokio
//! runtime whose threads block all signals (`transport`). Finished HTTP jobs come back over a
//! channel and wake the main thread with SIGUSR1 (PostgreSQL's handler sets the latch).
//! Their log lines take the same way: queued, and written by the main thread each round
//! (`crate::log`, installed here at start).

mod engine;
mod error;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;
use std::time::Duration;

/// Registers the workers; only possible while the postmaster loads preloaded libraries.
pub fn init() {
    // SAFETY: a plain read of a flag the postmaster sets while it loads preloaded libraries; _PG_init runs on the
    // process's only thread.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    for db in crate::settings::databases() {
        BackgroundWorkerBuilder::new(&format!("pg_syncbridge worker for database {db}"))
            .set_type("pg_syncbridge")
            .set_function("syncbridge_worker_main")
            .set_library("pg_syncbridge")
            .set_extra(&db)
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(Some(Duration::from_secs(5)))
            .load();
    }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn syncbridge_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    pin_search_path();
    // SAFETY: on the worker's main thread after it has connected; the name is a static NUL-terminated string.
    unsafe { pg_sys::pgstat_report_appname(c"pg_syncbridge".as_ptr()) };
    // SAFETY: MyDatabaseId is set by connect_worker_to_spi above and never changes afterwards.
    crate::outbox::wake::announce(unsafe { pg_sys::MyDatabaseId });
    let transport = match crate::transport::Transport::start(2, wake_self) {
        Ok(t) => t,
        Err(e) => {
            pgrx::warning!("pg_syncbridge: cannot start the HTTP runtime: {e}");
            return;
        }
    };
    crate::log::install(crate::settings::log_threshold());
    log!("pg_syncbridge: worker started for database \"{db}\"");
    let listener = crate::listen::start(transport.handle(), &db, wake_self);
    engine::Engine::new(transport, listener).run();
    crate::log::drain();
    // Exit code 1: the postmaster starts the worker again after its restart time, unless the
    // server is shutting down (so pg_terminate_backend() restarts it, like a crash would).
    log!("pg_syncbridge: worker for database \"{db}\" stopped");
    // SAFETY: on the worker's main thread, outside any transaction; proc_exit runs the exit callbacks and does not
    // return.
    unsafe { pg_sys::proc_exit(1) };
}

/// The worker runs as the bootstrap superuser: every name its SQL does not qualify (a
/// function such as `jsonb_build_object`, an operator) must resolve in `pg_catalog`, never in
/// a schema a database owner or any role with CREATE could fill. Set with the highest source,
/// so neither `ALTER DATABASE/ROLE … SET search_path` nor a reload changes it.
fn pin_search_path() {
    // SAFETY: sets a GUC on the backend's main thread, before any transaction; search_path's
    // check hook only parses the list.
    unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
}

/// Runs on a transport thread: SIGUSR1 to our own process reaches the main thread (the only
/// one with signals unblocked), whose handler sets the latch.
fn wake_self() {
    // SAFETY: kill(2) on our own pid touches no memory; PostgreSQL's SIGUSR1 handler (procsignal_sigusr1_handler)
    // sets the latch.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGUSR1);
    }
}
