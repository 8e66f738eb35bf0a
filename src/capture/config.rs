//! What a capture trigger needs to know of its link, cached per backend.
//!
//! Loaded on first use through `syncbridge._capture_config`, read as the extension's owner (so
//! a role without rights on the catalog is captured too, and learns nothing of it), combined
//! with the table's own tuple descriptor. The cache is dropped for a table when its relcache entry is invalidated: on
//! any ALTER TABLE, and on purpose by every catalog function that changes a link.

use super::values::Codec;
use crate::error::{OrRaise, SyncError};
use crate::logic::link_spec::Guard;
use crate::logic::mapping::{Column, FieldMap, FieldRule, FINGERPRINT_COLUMN, LAST_TOUCH_COLUMN};
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use serde::Deserialize;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

/// The configuration is kept per link and relation: a partition has attribute numbers of its
/// own.
/// A synced field ready for the hot path.
pub struct CapturedField {
    pub remote: String,
    pub codec: Codec,
    pub volatile: bool,
    pub watched: bool,
    /// Owned by the remote (`set_field(..., owner => 'remote')`).
    pub remote_owned: bool,
}

pub struct CaptureConfig {
    pub link_id: i64,
    pub name: String,
    pub relid: pg_sys::Oid,
    /// The `context` guard: writes under this link's own origin flag are not enqueued.
    pub context_guard: bool,
    /// The `ownership` guard: a write under this link's flag that changed only fields the
    /// remote owns is not enqueued.
    pub ownership_guard: bool,
    pub key: Codec,
    /// Sorted by remote name.
    pub fields: Vec<CapturedField>,
    pub has_watched: bool,
    /// Attribute numbers of `_sync_last_touch` and `_sync_fingerprint` when tracking.
    pub tracking: Option<(i16, i16)>,
}

#[derive(Deserialize)]
struct Stored {
    id: i64,
    name: String,
    key_column: String,
    loop_guards: Vec<String>,
    track_columns: bool,
    rules: Vec<StoredRule>,
}

#[derive(Deserialize)]
struct StoredRule {
    column_name: String,
    remote_field: Option<String>,
    owner: Option<String>,
    watched: bool,
    volatile: bool,
    synced: bool,
}

thread_local! {
    static CACHE: RefCell<HashMap<(i64, pg_sys::Oid), Rc<CaptureConfig>>> = RefCell::new(HashMap::new());
    /// Set when an invalidation arrived while the cache was borrowed.
    static RESET_PENDING: Cell<bool> = const { Cell::new(false) };
    /// The configuration of the trigger that fired last, by trigger OID: the rows of one
    /// statement all fire the same trigger, so most calls need no argument parsing or hashing.
    static LAST: RefCell<Option<(pg_sys::Oid, Rc<CaptureConfig>)>> = const { RefCell::new(None) };
}

pub fn init() {
    // SAFETY: in _PG_init on the backend's main thread; `invalidate` has the relcache callback's signature.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(invalidate), pg_sys::Datum::from(0)) };
}

/// # Safety
/// Called by PostgreSQL only, as a relcache invalidation callback on the backend's main thread.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn invalidate(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    LAST.with(|last| match last.try_borrow_mut() {
        Ok(mut last) => *last = None,
        Err(_) => RESET_PENDING.with(|p| p.set(true)),
    });
    CACHE.with(|cache| match cache.try_borrow_mut() {
        Ok(mut map) if relid == pg_sys::InvalidOid => map.clear(),
        Ok(mut map) => map.retain(|_, cfg| cfg.relid != relid),
        Err(_) => RESET_PENDING.with(|p| p.set(true)),
    });
}

/// The configuration of the link whose capture trigger `td` fired (`func` names the trigger
/// function in errors).
///
/// # Safety
/// `td` must be the trigger data of the current call.
pub unsafe fn for_trigger(td: &pg_sys::TriggerData, func: &str) -> Rc<CaptureConfig> {
    let tgoid = (*td.tg_trigger).tgoid;
    let relid = (*td.tg_relation).rd_id;
    if !RESET_PENDING.with(|p| p.get()) {
        let hit = LAST.with(|l| {
            l.borrow().as_ref().filter(|(t, cfg)| *t == tgoid && cfg.relid == relid).map(|(_, cfg)| cfg.clone())
        });
        if let Some(cfg) = hit {
            return cfg;
        }
    }
    let cfg = get(super::trigger::link_id(td, func), td.tg_relation);
    LAST.with(|l| *l.borrow_mut() = Some((tgoid, cfg.clone())));
    cfg
}

/// The configuration of `link_id` for the trigger's relation, loading it on a cache miss.
///
/// # Safety
/// `rel` must be the open relation of the firing trigger.
pub unsafe fn get(link_id: i64, rel: pg_sys::Relation) -> Rc<CaptureConfig> {
    if RESET_PENDING.with(|p| p.replace(false)) {
        CACHE.with(|c| c.borrow_mut().clear());
        LAST.with(|l| *l.borrow_mut() = None);
    }
    // SAFETY: `rel` is the open relation of the firing trigger (the caller's guarantee).
    let relid = unsafe { (*rel).rd_id };
    if let Some(cfg) = CACHE.with(|c| c.borrow().get(&(link_id, relid)).cloned()) {
        return cfg;
    }
    let cfg = Rc::new(load(link_id, rel).or_raise());
    CACHE.with(|c| c.borrow_mut().insert((link_id, relid), cfg.clone()));
    cfg
}

fn load(link_id: i64, rel: pg_sys::Relation) -> Result<CaptureConfig, SyncError> {
    // SAFETY: `rel` is the firing trigger's open relation, passed down from `get`, whose caller guarantees it.
    let relid = unsafe { (*rel).rd_id };
    let stored = crate::catalog::owner::as_extension_owner(|| {
        Spi::get_one_with_args::<JsonB>("SELECT syncbridge._capture_config($1, $2)", &[link_id.into(), relid.into()])
    })?
    .ok_or_else(|| {
        SyncError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("pg_syncbridge link {link_id} of this table's capture trigger does not exist"),
            "The trigger outlived its link, or belongs to another table: drop it; syncbridge.create_link installs the right ones.",
        )
    })?;
    let stored: Stored = serde_json::from_value(stored.0)
        .map_err(|e| SyncError::internal(format!("unreadable link configuration: {e}")))?;
    let (columns, typids) = table_columns(rel);
    let rules = stored
        .rules
        .iter()
        .map(|r| {
            Ok(FieldRule {
                column: r.column_name.clone(),
                remote_field: r.remote_field.clone(),
                owner: r.owner.as_deref().map(crate::logic::link_spec::Side::parse).transpose()?,
                watched: r.watched,
                volatile: r.volatile,
                synced: r.synced,
            })
        })
        .collect::<Result<Vec<_>, crate::logic::link_spec::SpecError>>()?;
    let map = FieldMap::build(&columns, &rules, &stored.key_column)?;
    let codec = |attnum: i16| Codec::new(attnum, typids[&attnum]);
    let tracking = if stored.track_columns {
        let find = |name: &str| {
            columns.iter().find(|c| c.name == name).map(|c| c.attnum).ok_or_else(|| {
                SyncError::new(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!("column \"{name}\" of the linked table is missing"),
                    "pg_syncbridge maintains it; re-create it with syncbridge.alter_link(<link>, '{}') or drop and re-create the link.",
                )
            })
        };
        Some((find(LAST_TOUCH_COLUMN)?, find(FINGERPRINT_COLUMN)?))
    } else {
        None
    };
    let guards = Guard::parse_list(&stored.loop_guards)?;
    Ok(CaptureConfig {
        link_id: stored.id,
        name: stored.name,
        relid,
        context_guard: guards.contains(&Guard::Context),
        ownership_guard: guards.contains(&Guard::Ownership),
        key: codec(map.key.attnum),
        has_watched: map.has_watched(),
        fields: map
            .fields
            .iter()
            .map(|f| CapturedField {
                remote: f.remote.clone(),
                codec: codec(f.attnum),
                volatile: f.volatile,
                watched: f.watched,
                remote_owned: f.owner == Some(crate::logic::link_spec::Side::Remote),
            })
            .collect(),
        tracking,
    })
}

/// The live columns of a relation, from its tuple descriptor.
fn table_columns(rel: pg_sys::Relation) -> (Vec<Column>, HashMap<i16, pg_sys::Oid>) {
    let mut columns = Vec::new();
    let mut typids = HashMap::new();
    // SAFETY: `rel` is the firing trigger's open relation (from `get`); its descriptor holds `natts` attributes, each
    // with a NUL-terminated name.
    unsafe {
        let desc = (*rel).rd_att;
        for i in 0..(*desc).natts as usize {
            let att = (*desc).attrs.as_ptr().add(i);
            if (*att).attisdropped {
                continue;
            }
            let name = CStr::from_ptr((*att).attname.data.as_ptr()).to_string_lossy().into_owned();
            columns.push(Column {
                name,
                attnum: (*att).attnum,
                not_null: (*att).attnotnull,
                coerce: Default::default(),
            });
            typids.insert((*att).attnum, (*att).atttypid);
        }
    }
    (columns, typids)
}
