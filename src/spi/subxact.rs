//! Running one record's work in a subtransaction, so that its failure rolls back only its
//! own writes and the batch goes on.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::{PgSqlErrorCode, PgTryBuilder};
use std::panic::AssertUnwindSafe;

/// Runs `f` in an internal subtransaction: committed when `f` returns, rolled back when it
/// raises an ERROR, whose message is returned.
pub fn run<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    run_catching(f, |_| true)
}

/// Like [`run`], but an error that is not about the work itself is raised again once the
/// subtransaction is rolled back: a cancel (a query cancel, a statement timeout), and what
/// says "try again later" (a deadlock, a serialization failure, a lock timeout). A caller
/// that would record the work as failed, or go on to try it another way, must stop instead:
/// a pull would otherwise move its cursor past a record that never failed.
pub fn run_unless_transient<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    run_catching(f, |code| {
        !matches!(
            code,
            PgSqlErrorCode::ERRCODE_QUERY_CANCELED
                | PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED
                | PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE
                | PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE
        )
    })
}

/// Runs `f` in a subtransaction; an ERROR whose code `catch` refuses is raised again after
/// the rollback.
fn run_catching<R>(f: impl FnOnce() -> R, catch: fn(PgSqlErrorCode) -> bool) -> Result<R, String> {
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
            let report = match &e {
                CaughtError::PostgresError(r)
                | CaughtError::ErrorReport(r)
                | CaughtError::RustPanic { ereport: r, .. } => r,
            };
            let (code, message) = (report.sql_error_code(), report.message().to_string());
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(ctx);
            pg_sys::CurrentResourceOwner = owner;
            if !catch(code) {
                e.rethrow();
            }
            Err(message)
        })
        .execute()
    }
}
