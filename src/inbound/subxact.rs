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

/// Like [`run`], but a cancel (a query cancel, a statement timeout) is raised again once the
/// subtransaction is rolled back: a caller that would go on to try the work another way must
/// stop instead.
pub fn run_unless_cancelled<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    run_catching(f, |code| code != PgSqlErrorCode::ERRCODE_QUERY_CANCELED)
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
