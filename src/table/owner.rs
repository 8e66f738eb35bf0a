//! Acting as a linked table's owner. The worker runs as the bootstrap superuser, and the
//! functions users call (`apply_inbound`, `explain`) as a superuser; but a linked table can
//! run code its owner wrote — triggers, defaults, domain checks, generated columns, rules,
//! the input and output functions of user types. That code must never run with more rights
//! than its owner has, so every statement on a linked table runs as the table's owner, in a
//! security-restricted context when the owner is not a superuser: the way PostgreSQL's own
//! logical replication apply (since 16) and VACUUM/ANALYZE (for index expressions) run other
//! people's code. Settings the owner's code changes are undone when the statement is over.
//! Everything on `syncbridge.*` runs outside, as the caller.

use crate::error::SyncError;
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;

/// The user id and security context to put back, and the GUC nest level to unwind.
struct Switched {
    user: pg_sys::Oid,
    context: i32,
    /// `Some` for a restricted switch: settings made meanwhile are undone.
    guc_nest: Option<i32>,
}

impl Drop for Switched {
    fn drop(&mut self) {
        // SAFETY: plain assignments to backend globals on the backend's own thread. On an
        // ERROR the unwinding comes through here before the (sub)transaction's abort, which
        // also puts the user back and pops the GUC levels; popping them here first would
        // run GUC code in the middle of error recovery, so only the normal path does.
        unsafe {
            if let Some(nest) = self.guc_nest.filter(|_| !std::thread::panicking()) {
                pg_sys::AtEOXact_GUC(false, nest);
            }
            pg_sys::SetUserIdAndSecContext(self.user, self.context);
        }
    }
}

/// Runs `body` as the owner of the table `relid`. A table owned by the current user, or by a
/// superuser (who could become the caller anyway), runs without restrictions; any other
/// owner's code runs with `SECURITY_RESTRICTED_OPERATION` (no SET ROLE, no temporary tables,
/// no session state that outlives the statement) and a GUC nest level of its own. A caller
/// who may not act as the owner (not a member of its role) is refused.
pub fn as_table_owner<R>(relid: pg_sys::Oid, body: impl FnOnce() -> R) -> R {
    let owner = owner_of(relid);
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    // SAFETY: reads two backend globals into locals.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    if owner == user {
        return body();
    }
    // SAFETY: catalog lookups by OID on the backend's thread, inside a transaction.
    let (may_act, trusted) = unsafe { (pg_sys::has_privs_of_role(user, owner), pg_sys::superuser_arg(owner)) };
    if !may_act {
        SyncError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to act as the owner of table {}", table_name(relid)),
            "pg_syncbridge reads and writes a linked table as its owner; call this as a superuser or a member of the owner's role.",
        )
        .raise();
    }
    let restricted = if trusted { 0 } else { pg_sys::SECURITY_RESTRICTED_OPERATION as i32 };
    // SAFETY: as SECURITY DEFINER functions and VACUUM do; `Switched` puts it back.
    let _back = unsafe {
        pg_sys::SetUserIdAndSecContext(owner, context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 | restricted);
        Switched { user, context, guc_nest: (!trusted).then(|| pg_sys::NewGUCNestLevel()) }
    };
    body()
}

/// The owner of the relation `relid` (from the relation cache's catalog copy).
fn owner_of(relid: pg_sys::Oid) -> pg_sys::Oid {
    // SAFETY: a syscache probe by OID; the tuple is released before anything else runs.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, pg_sys::Datum::from(relid));
        if tuple.is_null() {
            SyncError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("the linked table with OID {} does not exist", relid.to_u32()),
                "It was dropped meanwhile; see SELECT * FROM syncbridge.links;",
            )
            .raise();
        }
        let owner = (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple)).relowner;
        pg_sys::ReleaseSysCache(tuple);
        owner
    }
}

fn table_name(relid: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup by OID inside a transaction; returns a palloc'd name or NULL.
    let name = unsafe { pg_sys::get_rel_name(relid) };
    if name.is_null() {
        return format!("#{}", relid.to_u32());
    }
    // SAFETY: not NULL, so the NUL-terminated name get_rel_name just palloc'd.
    unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned()
}
