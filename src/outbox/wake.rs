//! Waking the worker right after a commit that queued work (realtime links), without polling.
//!
//! Each worker announces itself in a small shared-memory table (database oid → PGPROC number).
//! Whatever writes the outbox marks the transaction; at commit the backend sets the latch of
//! its database's worker. A latch set by mistake (a stale slot after a restart) only causes a
//! spurious wake-up, which every latch user tolerates.

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PgAtomic};
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const SLOTS: usize = 32;

/// `(database oid << 32) | (pgprocno + 1)`, 0 when free.
// SAFETY: no other shared-memory object of the server is named pg_syncbridge_workers.
static WORKERS: PgAtomic<[AtomicU64; SLOTS]> = unsafe { PgAtomic::new(c"pg_syncbridge_workers") };
/// Set in the postmaster when the library is preloaded; backends inherit it.
static SHARED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static WAKE_AT_COMMIT: Cell<bool> = const { Cell::new(false) };
}

/// Reserves the shared table (only possible while preloading) and listens for commits.
pub fn init() {
    // SAFETY: a plain read of a flag the postmaster sets while it loads preloaded libraries; _PG_init runs on the
    // process's only thread.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg_shmem_init!(WORKERS);
        SHARED.store(true, Ordering::Relaxed);
    }
    // SAFETY: in _PG_init on the backend's main thread; `on_xact` has the transaction callback's signature.
    unsafe { pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut()) };
}

/// The worker of `database` will be woken when this transaction commits.
pub fn at_commit() {
    WAKE_AT_COMMIT.with(|w| w.set(true));
}

/// Marks the current transaction so that its commit wakes the worker (backfill,
/// retry_failed).
#[pg_extern(volatile, name = "_wake_worker")]
fn wake_worker_at_commit() {
    at_commit();
}

/// Called by a worker once connected: commits in `database` now set its latch.
pub fn announce(database: pg_sys::Oid) {
    if !SHARED.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: PostgreSQL keeps `MyProc` valid for the backend's lifetime; the worker calls this after connecting.
    let me = (u64::from(database.to_u32()) << 32) | (unsafe { (*pg_sys::MyProc).pgprocno } as u64 + 1);
    let slots = WORKERS.get();
    // Our database's old slot (a previous run of this worker) first, else a free one.
    let pick = slots
        .iter()
        .find(|s| s.load(Ordering::Acquire) >> 32 == u64::from(database.to_u32()))
        .or_else(|| slots.iter().find(|s| s.load(Ordering::Acquire) == 0));
    if let Some(slot) = pick {
        slot.store(me, Ordering::Release);
    }
}

fn wake(database: pg_sys::Oid) {
    if !SHARED.load(Ordering::Relaxed) {
        return;
    }
    for slot in WORKERS.get().iter() {
        let v = slot.load(Ordering::Acquire);
        if v != 0 && v >> 32 == u64::from(database.to_u32()) {
            let procno = (v & 0xffff_ffff) as usize - 1;
            // SAFETY: ProcGlobal and its allProcs array live in shared memory for the server's lifetime; `procno` is
            // checked against allProcCount, and any process may SetLatch another's latch.
            unsafe {
                let global = pg_sys::ProcGlobal;
                if !global.is_null() && procno < (*global).allProcCount as usize {
                    pg_sys::SetLatch(&mut (*(*global).allProcs.add(procno)).procLatch);
                }
            }
        }
    }
}

/// # Safety
/// Called by PostgreSQL only, as a transaction callback on the backend's main thread.
#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT if WAKE_AT_COMMIT.with(|w| w.replace(false)) => {
            // SAFETY: MyDatabaseId is set when the backend connects and never changes afterwards; this is a connected
            // backend's commit.
            wake(unsafe { pg_sys::MyDatabaseId });
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => WAKE_AT_COMMIT.with(|w| w.set(false)),
        _ => {}
    }
}
