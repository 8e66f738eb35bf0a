//! Running one record's work in a subtransaction, so that its failure rolls back only its
//! own writes and the batch goes on.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::{PgSqlErrorCode, PgTryBuilder};
use std::panic::AssertUnwindSafe;

/// An ERROR caught by a subtransaction: its SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub code: PgSqlErrorCode,
    pub message: String,
}

impl SqlError {
    /// The five-character SQLSTATE (PostgreSQL packs it six bits a character).
    pub fn sqlstate(&self) -> String {
        let packed = self.code as i32;
        (0..5).map(|i| char::from(b'0' + ((packed >> (6 * i)) & 0x3F) as u8)).collect()
    }
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs `f` in an internal subtransaction: committed when `f` returns, rolled back when it
/// raises an ERROR, which is returned.
pub fn run<R>(f: impl FnOnce() -> R) -> Result<R, SqlError> {
    run_catching(f, |_| true)
}

/// Like [`run`], but an error that is not about the work itself is raised again once the
/// subtransaction is rolled back: a cancel (a query cancel, a statement timeout), and what
/// says "try again later" (a deadlock, a serialization failure, a lock timeout). A caller
/// that would record the work as failed, or go on to try it another way, must stop instead:
/// a pull would otherwise move its cursor past a record that never failed.
pub fn run_unless_transient<R>(f: impl FnOnce() -> R) -> Result<R, SqlError> {
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
fn run_catching<R>(f: impl FnOnce() -> R, catch: fn(PgSqlErrorCode) -> bool) -> Result<R, SqlError> {
    // SAFETY: on the backend's main thread inside a transaction (every caller runs in one); the subtransaction begun
    // here is released or rolled back exactly once, by one of the two closures, which also restore the caller's
    // memory context and resource owner.
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
            Err(SqlError { code, message })
        })
        .execute()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_unpack_to_their_five_characters() {
        let e = |code| SqlError { code, message: String::new() }.sqlstate();
        assert_eq!(e(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE), "42501");
        assert_eq!(e(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE), "55P03");
        assert_eq!(e(PgSqlErrorCode::ERRCODE_QUERY_CANCELED), "57014");
        assert_eq!(e(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR), "XX000");
    }
}
