//! DDL that capture must follow: `ALTER TABLE ... RENAME COLUMN` on a linked table. A C event
//! trigger on `ddl_command_end`, because only the statement knows the column's old name;
//! `syncbridge._column_renamed` (sql/capture.sql) updates the links, as the extension's owner,
//! and the capture caches of the tables it touched are invalidated here, so every backend
//! reloads the link with the new names before its next write. (Dropped columns are followed
//! by the `sql_drop` event trigger, `syncbridge._on_sql_drop`.)

use crate::catalog::link::invalidate_table;
use crate::catalog::owner::as_extension_owner;
use crate::error::OrRaise;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::ffi::CStr;

crate::capture::trigger::finfo_v1!(pg_finfo_syncbridge_on_ddl_end);

/// # Safety
/// Called by PostgreSQL as an event trigger function.
#[unsafe(no_mangle)]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn syncbridge_on_ddl_end(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let ctx = (*fcinfo).context;
    if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_EventTriggerData {
        crate::error::SyncError::new(
            PgSqlErrorCode::ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED,
            "syncbridge._on_ddl_end can only be called as an event trigger",
            "The extension installs it on ddl_command_end; do not call it.",
        )
        .raise();
    }
    let data = &*(ctx as *const pg_sys::EventTriggerData);
    if let Some((old, new)) = renamed_column(data.parsetree) {
        column_renamed(&old, &new);
    }
    pg_sys::Datum::from(0)
}

/// The old and new name of a column rename, if the statement is one.
unsafe fn renamed_column(tree: *mut pg_sys::Node) -> Option<(String, String)> {
    if tree.is_null() || (*tree).type_ != pg_sys::NodeTag::T_RenameStmt {
        return None;
    }
    let stmt = &*(tree as *const pg_sys::RenameStmt);
    if stmt.renameType != pg_sys::ObjectType::OBJECT_COLUMN || stmt.subname.is_null() || stmt.newname.is_null() {
        return None;
    }
    let text = |p: *const std::ffi::c_char| CStr::from_ptr(p).to_string_lossy().into_owned();
    Some((text(stmt.subname), text(stmt.newname)))
}

fn column_renamed(old: &str, new: &str) {
    let tables: Vec<pg_sys::Oid> = as_extension_owner(|| {
        Spi::connect(|c| {
            c.select("SELECT syncbridge._column_renamed($1, $2)", None, &[old.into(), new.into()])
                .map(|rows| rows.filter_map(|r| r.get::<pg_sys::Oid>(1).ok().flatten()).collect())
        })
    })
    .map_err(crate::error::SyncError::from)
    .or_raise();
    for t in tables {
        invalidate_table(t);
    }
}
