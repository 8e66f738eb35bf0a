//! Writing keys to the outbox, straight into the table and its index (as TimescaleDB writes
//! its catalog): no parser, planner or executor per commit. The capture path is on every
//! write of a linked table, so this is where its cost is counted.
//!
//! The outbox's columns are ours and fixed: id, link_id, op, keys, origin, enqueued_at, fields.

use pgrx::prelude::*;
use pgrx::IntoDatum;
use std::ffi::CStr;

/// Keys per outbox row at most: large statements are split so the worker can claim them in
/// pieces.
pub const KEYS_PER_ROW: usize = 1000;

/// Bytes of keys per outbox row at most, so that a row stays under PostgreSQL's TOAST
/// threshold (about 2 kB): a row that crosses it is compressed and stored in pieces, which
/// made the commit of a million-row statement cost a sixth of the statement itself.
const KEY_BYTES_PER_ROW: usize = 1800;

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
pub fn enqueue(link_id: i64, op: Op, keys: &[&str], origin: Option<&str>) {
    enqueue_with_fields(link_id, op, keys, origin, None)
}

/// Like [`enqueue`], with the list of fields an outbox row is about (`Op::Reflect`).
pub fn enqueue_with_fields(link_id: i64, op: Op, keys: &[&str], origin: Option<&str>, fields: Option<&[String]>) {
    if keys.is_empty() {
        return;
    }
    super::wake::at_commit();
    // SAFETY: in a transaction on the backend's main thread (the capture pre-commit, the worker); the outbox is
    // opened and locked here, its 7 columns checked before any tuple is formed from its descriptor, and the index and
    // table are closed before returning.
    unsafe {
        let oids = outbox_oids();
        let rel = pg_sys::table_open(oids.table, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        if (*(*rel).rd_att).natts != 7 {
            crate::error::SyncError::new(
                pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "syncbridge.outbox does not have the columns this version of pg_syncbridge writes",
                "The installed extension script and library differ: ALTER EXTENSION pg_syncbridge UPDATE, or re-create the extension.",
            )
            .raise();
        }
        // Our one index is filled here directly; if someone added another, every insert goes
        // through CatalogTupleInsert, which keeps all of them.
        let indexes = pg_sys::RelationGetIndexList(rel);
        let only_ours = !indexes.is_null() && (*indexes).length == 1 && pg_sys::list_member_oid(indexes, oids.index);
        let index = if only_ours {
            pg_sys::index_open(oids.index, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE)
        } else {
            std::ptr::null_mut()
        };
        let index_info = if only_ours { pg_sys::BuildIndexInfo(index) } else { std::ptr::null_mut() };
        let op_datum = op.as_str().into_datum().expect("text datum");
        let origin_datum = origin.and_then(|o| o.into_datum());
        let now = pg_sys::Datum::from(pg_sys::GetCurrentTransactionStartTimestamp());
        let fields_datum = fields.and_then(|f| text_array(f.iter().map(String::as_str)));
        let cid = pg_sys::GetCurrentCommandId(true);
        for chunk in chunks(keys) {
            // Ids are taken as the outbox's owner would (no privilege check for the editor).
            let id = nextval_internal(oids.seq, false);
            let mut values = [
                pg_sys::Datum::from(id),
                pg_sys::Datum::from(link_id),
                op_datum,
                text_array(chunk.iter().copied()).expect("a chunk has keys"),
                origin_datum.unwrap_or(pg_sys::Datum::from(0)),
                now,
                fields_datum.unwrap_or(pg_sys::Datum::from(0)),
            ];
            let mut nulls = [false, false, false, false, origin_datum.is_none(), false, fields_datum.is_none()];
            let tuple = pg_sys::heap_form_tuple((*rel).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
            if !only_ours {
                pg_sys::CatalogTupleInsert(rel, tuple);
                pg_sys::heap_freetuple(tuple);
                continue;
            }
            pg_sys::heap_insert(rel, tuple, cid, 0, std::ptr::null_mut());
            // The one index, (link_id, id); ids come from the sequence, so they are unique.
            let mut index_values = [pg_sys::Datum::from(link_id), pg_sys::Datum::from(id)];
            let mut index_nulls = [false, false];
            pg_sys::index_insert(
                index,
                index_values.as_mut_ptr(),
                index_nulls.as_mut_ptr(),
                &mut (*tuple).t_self,
                rel,
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO,
                false,
                index_info,
            );
            pg_sys::heap_freetuple(tuple);
        }
        if only_ours {
            pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
}

// SAFETY: the declaration matches PostgreSQL 15's commands/sequence.h: `int64 nextval_internal(Oid relid, bool
// check_permissions)`.
unsafe extern "C-unwind" {
    /// `commands/sequence.h`: the next value of a sequence, without the SQL function's
    /// privilege check when `check_permissions` is false. Not in pgrx's bindings.
    #[link_name = "nextval_internal"]
    fn nextval_internal_unguarded(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

/// [`nextval_internal_unguarded`] behind pgrx's FFI guard, so its ERRORs (sequence
/// exhausted) unwind as they should.
///
/// # Safety
/// In a transaction on the backend's main thread; `relid` must be a sequence.
unsafe fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64 {
    pg_sys::ffi::pg_guard_ffi_boundary(|| nextval_internal_unguarded(relid, check_permissions))
}

/// `keys` in runs that fit one outbox row: at most [`KEYS_PER_ROW`] keys and
/// [`KEY_BYTES_PER_ROW`] bytes of array elements (a single longer key gets a row of its own).
fn chunks<'a, 'k>(keys: &'a [&'k str]) -> impl Iterator<Item = &'a [&'k str]> {
    let mut rest = keys;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut n = 0;
        while n < rest.len() && n < KEYS_PER_ROW {
            bytes += element_size(rest[n].len());
            if n > 0 && bytes > KEY_BYTES_PER_ROW {
                break;
            }
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// Bytes a text element of `len` bytes takes in an array: a 4-byte length word, the bytes,
/// padding to 4.
fn element_size(len: usize) -> usize {
    (4 + len).next_multiple_of(4)
}

/// A one-dimensional `text[]` without NULLs holding `items`, written in one allocation in
/// the layout of `utils/array.h` (header, dimension, lower bound, then each element with a
/// 4-byte length word, int-aligned). `None` when there are no items.
///
/// # Safety
/// On the backend's main thread: the array is palloc'd in the current memory context.
unsafe fn text_array<'a>(items: impl ExactSizeIterator<Item = &'a str> + Clone) -> Option<pg_sys::Datum> {
    const HEADER: usize = std::mem::size_of::<pg_sys::ArrayType>() + 2 * std::mem::size_of::<i32>();
    let n = items.len();
    if n == 0 {
        return None;
    }
    let total = HEADER + items.clone().map(|s| element_size(s.len())).sum::<usize>();
    // palloc refuses more than 1 GB, the most a varlena can hold.
    let base = pg_sys::palloc0(total) as *mut u8;
    let array = base as *mut pg_sys::ArrayType;
    pgrx::varlena::set_varsize_4b(base.cast(), total as i32);
    (*array).ndim = 1;
    (*array).dataoffset = 0;
    (*array).elemtype = pg_sys::TEXTOID;
    let dims = base.add(std::mem::size_of::<pg_sys::ArrayType>()) as *mut i32;
    dims.write(n as i32);
    dims.add(1).write(1);
    let mut at = HEADER;
    for s in items {
        pgrx::varlena::set_varsize_4b(base.add(at).cast(), (4 + s.len()) as i32);
        std::ptr::copy_nonoverlapping(s.as_ptr(), base.add(at + 4), s.len());
        at += element_size(s.len());
    }
    Some(pg_sys::Datum::from(array))
}

#[derive(Clone, Copy)]
struct OutboxOids {
    table: pg_sys::Oid,
    seq: pg_sys::Oid,
    index: pg_sys::Oid,
}

thread_local! {
    /// Looked up once per session; forgotten when the relation cache is invalidated.
    static OIDS: std::cell::Cell<Option<OutboxOids>> = const { std::cell::Cell::new(None) };
}

/// Registers the cache invalidation callback. Called from `_PG_init`.
pub fn init() {
    // SAFETY: in _PG_init on the backend's main thread; `forget_oids` has the relcache callback's signature.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget_oids), pg_sys::Datum::from(0)) };
}

/// # Safety
/// Called by PostgreSQL only, as a relcache invalidation callback on the backend's main thread.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forget_oids(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    OIDS.with(|o| {
        if o.get().is_some_and(|ids| relid == pg_sys::InvalidOid || [ids.table, ids.seq, ids.index].contains(&relid)) {
            o.set(None);
        }
    });
}

/// The OIDs of `syncbridge.outbox`, its id sequence and its index (syscache lookups, no SQL).
///
/// # Safety
/// In a transaction on the backend's main thread (syscache lookups).
unsafe fn outbox_oids() -> OutboxOids {
    if let Some(ids) = OIDS.with(|o| o.get()) {
        return ids;
    }
    let ns = pg_sys::get_namespace_oid(c"syncbridge".as_ptr(), true);
    let find = |name: &CStr| {
        if ns == pg_sys::InvalidOid {
            pg_sys::InvalidOid
        } else {
            pg_sys::get_relname_relid(name.as_ptr(), ns)
        }
    };
    let ids = OutboxOids { table: find(c"outbox"), seq: find(c"outbox_id_seq"), index: find(c"outbox_link_id") };
    if [ids.table, ids.seq, ids.index].contains(&pg_sys::InvalidOid) {
        crate::error::SyncError::new(
            pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "pg_syncbridge is not installed in this database, but a capture trigger fired",
            "CREATE EXTENSION pg_syncbridge, or drop the leftover syncbridge triggers of this table.",
        )
        .raise();
    }
    OIDS.with(|o| o.set(Some(ids)));
    ids
}
