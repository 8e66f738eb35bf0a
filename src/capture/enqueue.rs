//! Writing keys to the outbox, straight into the table and its index (as TimescaleDB writes
//! its catalog): no parser, planner or executor per commit. The capture path is on every
//! write of a linked table, so this is where its cost is counted.
//!
//! The outbox's columns are ours and fixed: id, link_id, op, keys, origin, enqueued_at, fields.

use pgrx::prelude::*;
use pgrx::IntoDatum;
use std::ffi::CStr;

/// Keys per outbox row: large statements are split so the worker can claim them in pieces.
pub const KEYS_PER_ROW: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Upsert,
    Delete,
    /// Send back the listed fields the local write added or changed (`reflect` guard).
    Reflect,
    /// Send the new local id to the remote (`local_id_field`).
    Writeback,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Upsert => "upsert",
            Op::Delete => "delete",
            Op::Reflect => "reflect",
            Op::Writeback => "writeback",
        }
    }
}

/// Inserts `keys` for `link_id` into the outbox, in the caller's transaction. Writes below
/// the SQL layer, so no privilege on `syncbridge` is needed by the editing role.
pub fn enqueue(link_id: i64, op: Op, keys: &[String], origin: Option<&str>) {
    enqueue_with_fields(link_id, op, keys, origin, None)
}

/// Like [`enqueue`], with the list of fields an outbox row is about (`Op::Reflect`).
pub fn enqueue_with_fields(link_id: i64, op: Op, keys: &[String], origin: Option<&str>, fields: Option<&[String]>) {
    if keys.is_empty() {
        return;
    }
    crate::worker::wake::at_commit();
    unsafe {
        let (table, seq) = outbox_oids();
        let rel = pg_sys::table_open(table, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        if (*(*rel).rd_att).natts != 7 {
            crate::error::SyncError::new(
                pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "syncbridge.outbox does not have the columns this version of pg_syncbridge writes",
                "The installed extension script and library differ: ALTER EXTENSION pg_syncbridge UPDATE, or re-create the extension.",
            )
            .raise();
        }
        let op_datum = op.as_str().into_datum().expect("text datum");
        let origin_datum = origin.and_then(|o| o.into_datum());
        let now = pg_sys::Datum::from(pg_sys::GetCurrentTransactionStartTimestamp());
        let fields_datum = fields.and_then(|f| f.iter().map(String::as_str).collect::<Vec<_>>().into_datum());
        // nextval() checks privileges on the sequence: take the ids as the outbox's owner.
        let owner = (*(*rel).rd_rel).relowner;
        for chunk in keys.chunks(KEYS_PER_ROW) {
            let array = chunk.iter().map(String::as_str).collect::<Vec<_>>().into_datum().expect("text[] datum");
            let id = crate::catalog::owner::as_user(owner, || {
                pgrx::direct_function_call::<i64>(pg_sys::nextval_oid, &[seq.into_datum()])
                    .expect("nextval gives a value")
            });
            let mut values = [
                pg_sys::Datum::from(id),
                pg_sys::Datum::from(link_id),
                op_datum,
                array,
                origin_datum.unwrap_or(pg_sys::Datum::from(0)),
                now,
                fields_datum.unwrap_or(pg_sys::Datum::from(0)),
            ];
            let mut nulls = [false, false, false, false, origin_datum.is_none(), false, fields_datum.is_none()];
            let tuple = pg_sys::heap_form_tuple((*rel).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::CatalogTupleInsert(rel, tuple);
            pg_sys::heap_freetuple(tuple);
        }
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
}

/// The OIDs of `syncbridge.outbox` and its id sequence (syscache lookups, no SQL).
unsafe fn outbox_oids() -> (pg_sys::Oid, pg_sys::Oid) {
    let ns = pg_sys::get_namespace_oid(c"syncbridge".as_ptr(), true);
    let find = |name: &CStr| {
        if ns == pg_sys::InvalidOid {
            pg_sys::InvalidOid
        } else {
            pg_sys::get_relname_relid(name.as_ptr(), ns)
        }
    };
    let (table, seq) = (find(c"outbox"), find(c"outbox_id_seq"));
    if table == pg_sys::InvalidOid || seq == pg_sys::InvalidOid {
        crate::error::SyncError::new(
            pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "pg_syncbridge is not installed in this database, but a capture trigger fired",
            "CREATE EXTENSION pg_syncbridge, or drop the leftover syncbridge triggers of this table.",
        )
        .raise();
    }
    (table, seq)
}
