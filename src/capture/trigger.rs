//! Checks and accessors shared by the capture trigger functions, which are plain C-ABI
//! functions (no pgrx wrapper) because they run once per row or statement of every write.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::ffi::CStr;

/// Declares the `PG_FUNCTION_INFO_V1` record PostgreSQL looks up for a C function that is
/// written without a pgrx wrapper.
macro_rules! finfo_v1 {
    ($name:ident) => {
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub extern "C" fn $name() -> &'static pgrx::pg_sys::Pg_finfo_record {
            const V1: pgrx::pg_sys::Pg_finfo_record = pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    };
}
pub(crate) use finfo_v1;

/// The trigger data of a call, after checking that it was called as the expected trigger.
///
/// # Safety
/// `fcinfo` must be the call info PostgreSQL passed to a function.
pub unsafe fn trigger_data<'a>(
    fcinfo: pg_sys::FunctionCallInfo,
    func: &str,
    row_level: bool,
) -> &'a pg_sys::TriggerData {
    let ctx = (*fcinfo).context;
    if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
        wrong_use(func, "it can only be called as a trigger");
    }
    let td = &*(ctx as *const pg_sys::TriggerData);
    let is_row = td.tg_event & pg_sys::TRIGGER_EVENT_ROW != 0;
    if is_row != row_level {
        wrong_use(
            func,
            if row_level { "it must be a FOR EACH ROW trigger" } else { "it must be a FOR EACH STATEMENT trigger" },
        );
    }
    td
}

/// The link id given as the trigger's only argument.
///
/// # Safety
/// `td` must be the trigger data PostgreSQL passed to the current call (`tg_trigger` and its `tgargs` valid).
pub unsafe fn link_id(td: &pg_sys::TriggerData, func: &str) -> i64 {
    let trig = &*td.tg_trigger;
    if trig.tgnargs != 1 {
        wrong_use(func, "it takes the link id as its only argument");
    }
    let arg = CStr::from_ptr(*trig.tgargs);
    arg.to_str().ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| wrong_use(func, "its argument must be a link id"))
}

pub fn operation(td: &pg_sys::TriggerData) -> u32 {
    td.tg_event & pg_sys::TRIGGER_EVENT_OPMASK
}

fn wrong_use(func: &str, why: &str) -> ! {
    crate::error::SyncError::new(
        PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
        format!("{func} was called the wrong way: {why}"),
        "Capture triggers are installed by syncbridge.create_link; do not create them by hand.",
    )
    .raise()
}

/// The key of a written row as text; the key column must not be NULL.
///
/// # Safety
/// `datum` must be a value of the key column's type (ignored when `isnull`).
pub unsafe fn key_text(cfg: &super::config::CaptureConfig, datum: pg_sys::Datum, isnull: bool) -> String {
    let mut key = String::new();
    write_key(cfg, datum, isnull, &mut key);
    key
}

/// Like [`key_text`], into `out` (cleared first).
///
/// # Safety
/// `datum` must be a value of the key column's type (ignored when `isnull`).
pub unsafe fn write_key(cfg: &super::config::CaptureConfig, datum: pg_sys::Datum, isnull: bool, out: &mut String) {
    out.clear();
    if isnull {
        // The key column is NOT NULL when the link is created; a later ALTER may drop that.
        crate::error::SyncError::new(
            PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
            format!("the key column of link \"{}\" is NULL in a written row", cfg.name),
            "A link's key column must stay NOT NULL: ALTER TABLE ... ALTER COLUMN ... SET NOT NULL.",
        )
        .raise();
    }
    cfg.key.write_key(datum, out)
}
