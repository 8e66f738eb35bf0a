//! Acting as the extension's owner for the few internal reads and writes that the capture
//! triggers make in the session of whatever role edits a linked table.

use pgrx::prelude::*;
use std::cell::Cell;

thread_local! {
    static OWNER: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
}

/// Runs `body` with the user id switched to the owner of the `syncbridge` catalog tables. On
/// an ERROR inside `body`, the (sub)transaction abort puts the user back.
pub fn as_extension_owner<R>(body: impl FnOnce() -> R) -> R {
    as_user(owner(), body)
}

/// Runs `body` with the user id switched to `user` (a local change, as SECURITY DEFINER
/// functions make it). On an ERROR inside `body`, the (sub)transaction abort puts it back.
pub fn as_user<R>(user: pg_sys::Oid, body: impl FnOnce() -> R) -> R {
    let (mut saved, mut ctx) = (pg_sys::InvalidOid, 0);
    // SAFETY: reads and sets the session's user id on the backend's main thread; if `body` raises an ERROR the
    // (sub)transaction abort restores it.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved, &mut ctx);
        pg_sys::SetUserIdAndSecContext(user, ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    }
    let result = body();
    // SAFETY: restores the user id and security context read above, on the same thread.
    unsafe { pg_sys::SetUserIdAndSecContext(saved, ctx) };
    result
}

fn owner() -> pg_sys::Oid {
    let cached = OWNER.with(Cell::get);
    if cached != pg_sys::InvalidOid {
        return cached;
    }
    let owner = Spi::get_one::<pg_sys::Oid>(
        // Every name qualified: this runs under the editing session's search_path.
        "SELECT relowner FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass('syncbridge.outbox')::pg_catalog.oid",
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| {
        crate::error::SyncError::new(
            pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "pg_syncbridge is not installed in this database, but a capture trigger fired",
            "CREATE EXTENSION pg_syncbridge, or drop the leftover syncbridge triggers of this table.",
        )
        .raise()
    });
    OWNER.with(|o| o.set(owner));
    owner
}
