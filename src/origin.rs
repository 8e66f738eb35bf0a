//! The origin flag: a transaction-scoped marker, set while the extension itself writes into a
//! linked table, so that the capture triggers can tell link writes from user edits.
//!
//! It is the setting `syncbridge.origin` (the link name, or empty). The value lives in a
//! static that the GUC machinery writes and the triggers read without any lookup.
//!
//! * `PGC_SUSET`: an ordinary role's `SET` fails with `permission denied`; a superuser, or a
//!   role given `GRANT SET ON PARAMETER syncbridge.origin`, may set it on purpose.
//! * Transaction-scoped: a check hook refuses it outside a transaction block, the GUC stack
//!   reverts it when a (sub)transaction aborts, and a pre-commit callback clears a plain `SET`
//!   so that nothing outlives the transaction.
//! * The extension sets it for its own writes through [`with_origin`], with `PGC_SUSET`
//!   context from C, so it works whatever role called the extension.

use pgrx::pg_sys;
use std::cell::Cell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;

const NAME: &CStr = c"syncbridge.origin";

/// Written only by the GUC machinery (this backend's main thread).
static mut ORIGIN: *mut c_char = ptr::null_mut();

thread_local! {
    /// True while [`with_origin`] sets the flag, so the check hook lets the extension's own
    /// writes through even outside an explicit transaction block.
    static INTERNAL_SET: Cell<bool> = const { Cell::new(false) };
}

/// Registers the setting and the end-of-transaction callback. Called from `_PG_init`.
pub fn init() {
    // SAFETY: in _PG_init on the loading process's only thread; from here on ORIGIN belongs to the GUC machinery, the
    // strings are static and NUL-terminated, and check_origin has the check hook's signature.
    unsafe {
        pg_sys::DefineCustomStringVariable(
            NAME.as_ptr(),
            c"Link whose write is in progress in this transaction (empty for user edits).".as_ptr(),
            c"Set by pg_syncbridge while it applies link writes; capture triggers do not echo rows written under the flag of their own link. Only superusers or roles granted SET on this parameter may set it, and only within a transaction."
                .as_ptr(),
            &raw mut ORIGIN,
            c"".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            (pg_sys::GUC_NOT_IN_SAMPLE | pg_sys::GUC_DISALLOW_IN_FILE | pg_sys::GUC_DISALLOW_IN_AUTO_FILE | pg_sys::GUC_NO_RESET_ALL) as i32,
            Some(check_origin),
            None,
            None,
        );
        pg_sys::RegisterXactCallback(Some(clear_at_commit), ptr::null_mut());
    }
}

/// The link whose write is in progress, or `None` for a user edit.
#[inline]
pub fn current() -> Option<&'static str> {
    // SAFETY: the GUC machinery keeps ORIGIN pointing at a valid, NUL-terminated string (or
    // NULL before registration) for as long as the value is set; we only read it.
    unsafe {
        let p = ORIGIN;
        if p.is_null() || *p == 0 {
            None
        } else {
            CStr::from_ptr(p).to_str().ok()
        }
    }
}

/// Runs `body` with the origin flag set to `link`, then puts back the previous value, so a
/// user edit later in the same transaction is captured again. If `body` raises an ERROR the
/// (sub)transaction abort reverts the flag.
pub fn with_origin<R>(link: &str, body: impl FnOnce() -> R) -> R {
    let previous = current().map(str::to_owned);
    set_local(Some(link));
    let result = body();
    set_local(previous.as_deref());
    result
}

fn set_local(value: Option<&str>) {
    let value = CString::new(value.unwrap_or("")).expect("link names have no NUL byte");
    set_internally(&value, pg_sys::GucAction::GUC_ACTION_LOCAL, pgrx::PgLogLevel::ERROR);
}

/// Sets the flag with superuser context from C, past the permission and transaction-block
/// checks that apply to users.
fn set_internally(value: &CStr, action: pg_sys::GucAction::Type, elevel: pgrx::PgLogLevel) {
    INTERNAL_SET.with(|f| f.set(true));
    // SAFETY: on the backend's main thread inside a transaction (with_origin's callers and the pre-commit callback);
    // name and value are NUL-terminated, and an ERROR at `elevel` unwinds through pgrx's FFI guard.
    unsafe {
        pg_sys::set_config_option(
            NAME.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            elevel as i32,
            false,
        );
    }
    INTERNAL_SET.with(|f| f.set(false));
}

/// # Safety
/// Called by PostgreSQL only, as the setting's check hook on the backend's main thread: `newval` points to the
/// proposed value (a NUL-terminated string or NULL).
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_origin(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    let value = if (*newval).is_null() { "" } else { CStr::from_ptr(*newval).to_str().unwrap_or("\u{fffd}") };
    if value.is_empty() || INTERNAL_SET.with(Cell::get) {
        return true;
    }
    let refuse = |msg: &CStr, hint: &CStr| {
        pg_sys::GUC_check_errcode(pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE as i32);
        pg_sys::GUC_check_errmsg_string = pg_sys::pstrdup(msg.as_ptr());
        pg_sys::GUC_check_errhint_string = pg_sys::pstrdup(hint.as_ptr());
        false
    };
    if source != pg_sys::GucSource::PGC_S_SESSION {
        return refuse(
            c"syncbridge.origin cannot be set in a configuration file, role, database or function setting",
            c"It is transaction-scoped: use SET LOCAL syncbridge.origin = '<link>' inside BEGIN ... COMMIT.",
        );
    }
    if !pg_sys::IsTransactionBlock() {
        return refuse(
            c"syncbridge.origin can only be set inside a transaction block",
            c"It is cleared when the transaction ends: use BEGIN; SET LOCAL syncbridge.origin = '<link>'; ... COMMIT;",
        );
    }
    if crate::logic::link_spec::validate_link_name(value).is_err() {
        return refuse(
            c"syncbridge.origin must be a link name",
            c"Use the name of the link whose echo the writes must not cause, as in syncbridge.links.",
        );
    }
    true
}

/// Clears a value set with a plain `SET` inside the transaction block; `SET LOCAL` and the
/// extension's own settings are reverted by the GUC stack anyway (also on abort).
///
/// # Safety
/// Called by PostgreSQL only, as a transaction callback on the backend's main thread.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn clear_at_commit(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    let ending =
        event == pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT || event == pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE;
    if event == pg_sys::XactEvent::XACT_EVENT_ABORT {
        // An ERROR inside set_internally must not leave the bypass on.
        INTERNAL_SET.with(|f| f.set(false));
    }
    if ending && current().is_some() {
        set_internally(c"", pg_sys::GucAction::GUC_ACTION_SET, pgrx::PgLogLevel::WARNING);
    }
}
