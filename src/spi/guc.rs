//! Settings for the length of a call, as PostgreSQL sets them for a function with `SET`
//! clauses: saved in a new GUC nest level, put back afterwards (or by the abort of the
//! (sub)transaction when the call raises an ERROR).

use pgrx::pg_sys;
use std::ffi::CStr;

/// Runs `body` with these settings (name, value) for the session, put back afterwards.
///
/// Must be called on the backend's main thread inside a transaction; `body` may raise.
pub fn with_settings<R>(settings: &[(&CStr, &CStr)], body: impl FnOnce() -> R) -> R {
    // SAFETY: on the backend's main thread inside a transaction (the caller's contract); the
    // nest level opened here is closed by AtEOXact_GUC after `body`, or by the
    // (sub)transaction's abort if `body` raises an ERROR. The names and values are
    // NUL-terminated strings that outlive the calls (set_config_option copies them).
    unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        for (name, value) in settings {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                pgrx::PgLogLevel::ERROR as i32,
                false,
            );
        }
        let result = body();
        pg_sys::AtEOXact_GUC(true, nest);
        result
    }
}
