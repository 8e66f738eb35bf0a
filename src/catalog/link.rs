//! A link as stored in `syncbridge._link`.

use crate::error::{Result, SyncError};
use crate::logic::link_settings::LinkSettings;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct LinkRow {
    pub id: i64,
    pub name: String,
    pub relid: u32,
    pub key_column: String,
    pub remote_base_url: String,
    pub remote_collection: String,
    pub remote_key_field: String,
    pub direction: String,
    pub loop_guards: Vec<String>,
    pub contention: String,
    pub schedule: String,
    pub track_columns: bool,
    pub paused: bool,
    /// The settings as stored (what `alter_link` merges into and the `links` view shows).
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// The same, typed, every default filled in: what the code reads.
    #[serde(skip)]
    pub conf: LinkSettings,
}

impl LinkRow {
    /// Loads a link by name, locking its row so concurrent changes of one link serialise.
    pub fn load_for_update(name: &str) -> Result<Self> {
        let row = crate::error::spi_opt::<JsonB>(
            "SELECT to_jsonb(l) || jsonb_build_object('relid', l.local_table::oid::bigint) FROM syncbridge._link l WHERE l.name = $1 FOR UPDATE",
            &[name.into()],
        )?
        .ok_or_else(|| SyncError::no_such_link(name))?;
        let link: Self = serde_json::from_value(row.0)
            .map_err(|e| SyncError::internal(format!("unreadable link \"{name}\": {e}")))?;
        link.typed()
    }

    /// Every link, by id; for the worker, which must not lock them.
    pub fn load_all() -> Result<Vec<Self>> {
        let rows = crate::error::spi_opt::<JsonB>(
            "SELECT coalesce(jsonb_agg(to_jsonb(l) || jsonb_build_object('relid', l.local_table::oid::bigint) ORDER BY l.id), '[]') FROM syncbridge._link l",
            &[],
        )?;
        let links: Vec<Self> = serde_json::from_value(rows.map(|r| r.0).unwrap_or_default())
            .map_err(|e| SyncError::internal(format!("unreadable links: {e}")))?;
        links.into_iter().map(Self::typed).collect()
    }

    /// Parses the stored settings into `conf` (they were checked when they were set).
    fn typed(mut self) -> Result<Self> {
        self.conf = LinkSettings::parse(&self.settings).map_err(|e| {
            SyncError::internal(format!("unreadable settings of link \"{}\": {}", self.name, e.message))
        })?;
        Ok(self)
    }

    /// The link's field map, from the table as it is now and the stored field rules.
    pub fn field_map(&self) -> Result<crate::logic::mapping::FieldMap> {
        super::fields::link_field_map(self.relid(), self.id, &self.key_column)
    }

    pub fn relid(&self) -> pg_sys::Oid {
        pg_sys::Oid::from(self.relid)
    }

    /// Makes every backend reload what its capture triggers know of this link's table.
    pub fn invalidate_capture(&self) {
        invalidate_table(self.relid());
    }
}

/// Sends a relcache invalidation for the table and each of its partitions, which every
/// backend's capture cache listens to.
pub fn invalidate_table(relid: pg_sys::Oid) {
    let partitions = Spi::connect(|c| {
        c.select("SELECT relid FROM pg_partition_tree($1::regclass)", None, &[relid.into()])
            .map(|rows| rows.filter_map(|r| r.get::<pg_sys::Oid>(1).ok().flatten()).collect::<Vec<_>>())
            .unwrap_or_default()
    });
    let exists = crate::error::spi_opt::<bool>("SELECT EXISTS (SELECT FROM pg_class WHERE oid = $1)", &[relid.into()]);
    if exists.ok().flatten() != Some(true) {
        return;
    }
    // SAFETY: in a transaction on the backend's main thread; `relid` is an existing relation (checked just above), as
    // the relcache lookup requires; the invalidation is sent at commit.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    for part in partitions.into_iter().filter(|p| *p != relid) {
        // SAFETY: as above; each partition comes from pg_partition_tree of that relation in this transaction.
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(part) };
    }
}
