//! Running one record's work in a subtransaction, so that its failure rolls back only its
//! own writes and the batch goes on.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgTryBuilder;
use std::panic::AssertUnwindSafe;

/// Runs `f` in an internal subtransaction: committed when `f` returns, rolled back when it
/// raises an ERROR, whose message is returned.
pub fn run<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    unsafe {
        let ctx = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(ctx);
        let f = AssertUnwindSafe(f);
        PgTryBuilder::new(AssertUnwindSafe(move || {
            let f = f;
            let result = (f.0)();
            pg_sys::ReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(ctx);
            pg_sys::CurrentResourceOwner = owner;
            Ok(result)
        }))
        .catch_others(move |e| {
            pg_sys::MemoryContextSwitchTo(ctx);
            let message = match &e {
                CaughtError::PostgresError(r)
                | CaughtError::ErrorReport(r)
                | CaughtError::RustPanic { ereport: r, .. } => r.message().to_string(),
            };
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(ctx);
            pg_sys::CurrentResourceOwner = owner;
            Err(message)
        })
        .execute()
    }
}
