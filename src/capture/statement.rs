//! AFTER INSERT / UPDATE / DELETE FOR EACH STATEMENT, with transition tables, on links that do
//! not track columns: finds the rows whose synced content changed and adds their keys to the
//! capture buffer (links that track columns decide in the row trigger instead).
//!
//! Skips, in this order:
//! * the whole statement, when it ran under this link's own origin flag and the link has the
//!   `context` guard (the link wrote these rows itself);
//! * an updated row whose fingerprint did not change (only unsynced or volatile columns
//!   changed, or nothing at all);
//! * an updated row none of whose watched fields changed, when the link watches fields.
//!
//! An update that changes the key is a delete of the old key and an upsert of the new one.

use super::buffer;
use super::config::CaptureConfig;
use super::{config, trigger};
use crate::logic::fingerprint::{self, RecordWriter};
use crate::origin;
use crate::outbox::enqueue::Op;
use pgrx::prelude::*;
use std::collections::HashMap;

crate::capture::trigger::finfo_v1!(pg_finfo_syncbridge_capture_statement);

/// # Safety
/// Called by PostgreSQL as a trigger function.
#[unsafe(no_mangle)]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn syncbridge_capture_statement(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    const FUNC: &str = "syncbridge._capture_statement";
    let td = trigger::trigger_data(fcinfo, FUNC, false);
    let cfg = config::for_trigger(td, FUNC);
    let origin = origin::current();
    if cfg.context_guard && origin == Some(cfg.name.as_str()) {
        return pg_sys::Datum::from(0);
    }
    let desc = (*td.tg_relation).rd_att;
    match trigger::operation(td) {
        pg_sys::TRIGGER_EVENT_INSERT => {
            let mut keys = Vec::new();
            for_each_row(td.tg_newtable, desc, |slot| keys.push(key_of(&cfg, slot)));
            buffer::extend(cfg.link_id, Op::Upsert, origin, keys);
        }
        pg_sys::TRIGGER_EVENT_DELETE => {
            let mut keys = Vec::new();
            for_each_row(td.tg_oldtable, desc, |slot| keys.push(key_of(&cfg, slot)));
            buffer::extend(cfg.link_id, Op::Delete, origin, keys);
        }
        pg_sys::TRIGGER_EVENT_UPDATE => {
            let mut digest = Digester::new(&cfg);
            let mut before: HashMap<String, Option<String>> = HashMap::new();
            for_each_row(td.tg_oldtable, desc, |slot| {
                before.insert(key_of(&cfg, slot), digest.of(slot));
            });
            let mut upserts = Vec::new();
            for_each_row(td.tg_newtable, desc, |slot| {
                let key = key_of(&cfg, slot);
                let unchanged = match before.remove(&key) {
                    Some(old) => old.is_some() && old == digest.of(slot),
                    None => false,
                };
                if !unchanged {
                    upserts.push(key);
                }
            });
            buffer::extend(cfg.link_id, Op::Upsert, origin, upserts);
            let deletes: Vec<String> = before.into_keys().collect();
            buffer::extend(cfg.link_id, Op::Delete, origin, deletes);
        }
        _ => {}
    }
    pg_sys::Datum::from(0)
}

/// What must differ between the old and new version of a row for the update to be sent.
struct Digester<'a> {
    cfg: &'a CaptureConfig,
    writer: RecordWriter,
}

impl<'a> Digester<'a> {
    fn new(cfg: &'a CaptureConfig) -> Self {
        Self { cfg, writer: RecordWriter::new() }
    }

    /// The watched fields' canonical text when the link watches fields; else the stored
    /// fingerprint when the link tracks columns; else the fingerprint computed here. `None`
    /// when there is nothing to compare with (a row from before the link was created).
    ///
    /// # Safety
    /// `slot` must hold a row of the trigger's relation (a transition-table tuple), during the trigger's call.
    unsafe fn of(&mut self, slot: *mut pg_sys::TupleTableSlot) -> Option<String> {
        if !self.cfg.has_watched {
            if let Some((_, fp_att)) = self.cfg.tracking {
                let mut isnull = false;
                let datum = pg_sys::slot_getattr(slot, fp_att as i32, &mut isnull);
                return (!isnull).then(|| String::from_datum(datum, false)).flatten();
            }
        }
        let watched_only = self.cfg.has_watched;
        self.writer.begin();
        for f in &self.cfg.fields {
            if (watched_only && !f.watched) || (!watched_only && f.volatile) {
                continue;
            }
            let mut isnull = false;
            let datum = pg_sys::slot_getattr(slot, f.codec.attnum as i32, &mut isnull);
            f.codec.write(&mut self.writer, &f.remote, datum, isnull);
        }
        Some(fingerprint::of_canonical(self.writer.finish()))
    }
}

/// # Safety
/// `slot` must hold a row of the trigger's relation, during the trigger's call.
unsafe fn key_of(cfg: &CaptureConfig, slot: *mut pg_sys::TupleTableSlot) -> String {
    let mut isnull = false;
    let datum = pg_sys::slot_getattr(slot, cfg.key.attnum as i32, &mut isnull);
    trigger::key_text(cfg, datum, isnull)
}

/// Calls `f` with each tuple of a transition table, through a read pointer of our own so
/// that other AFTER triggers reading the same table are not disturbed.
///
/// # Safety
/// `store` must be a transition table of the current trigger call (or null), and `desc` its relation's tuple
/// descriptor.
unsafe fn for_each_row(
    store: *mut pg_sys::Tuplestorestate,
    desc: pg_sys::TupleDesc,
    mut f: impl FnMut(*mut pg_sys::TupleTableSlot),
) {
    if store.is_null() {
        return;
    }
    let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsMinimalTuple);
    let reader = pg_sys::tuplestore_alloc_read_pointer(store, pg_sys::EXEC_FLAG_REWIND as i32);
    pg_sys::tuplestore_select_read_pointer(store, reader);
    pg_sys::tuplestore_rescan(store);
    while pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
        f(slot);
    }
    pg_sys::ExecDropSingleTupleTableSlot(slot);
}
