//! BEFORE INSERT OR UPDATE OR DELETE FOR EACH ROW, on links that track columns: stamps
//! `_sync_last_touch` (`local` for a user edit, the link name under the origin flag) and
//! `_sync_fingerprint` (of the synced fields), and decides whether the row goes to the
//! outbox. Named `zz_…` so it runs after the user's own BEFORE triggers and sees the row as it
//! will be stored.
//!
//! Not enqueued: rows written under this link's own origin flag when the link has the
//! `context` guard; updates that leave the fingerprint unchanged; updates that change none of
//! the watched fields when the link watches fields. A key change is a delete of the old key
//! and an upsert of the new one.

use super::buffer;
use super::config::CaptureConfig;
use super::enqueue::Op;
use super::{config, trigger};
use crate::logic::fingerprint::{self, RecordWriter};
use crate::logic::link_spec::LOCAL_TOUCH;
use crate::origin;
use pgrx::prelude::*;
use std::cell::RefCell;

thread_local! {
    static WRITER: RefCell<RecordWriter> = RefCell::new(RecordWriter::new());
}

crate::capture::trigger::finfo_v1!(pg_finfo_syncbridge_capture_row);

/// # Safety
/// Called by PostgreSQL as a trigger function.
#[unsafe(no_mangle)]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn syncbridge_capture_row(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    const FUNC: &str = "syncbridge._capture_row";
    let td = trigger::trigger_data(fcinfo, FUNC, true);
    let cfg = config::get(trigger::link_id(td, FUNC), td.tg_relation);
    let desc = (*td.tg_relation).rd_att;
    let origin = origin::current();
    let own_write = origin == Some(cfg.name.as_str());
    let mut enqueue = !(cfg.context_guard && own_write);
    let op = trigger::operation(td);

    if op == pg_sys::TRIGGER_EVENT_DELETE {
        if enqueue {
            buffer::push(cfg.link_id, Op::Delete, origin, key_of(&cfg, td.tg_trigtuple, desc));
        }
        return pg_sys::Datum::from(td.tg_trigtuple);
    }
    let (old, new) = if op == pg_sys::TRIGGER_EVENT_UPDATE {
        (Some(td.tg_trigtuple), td.tg_newtuple)
    } else {
        (None, td.tg_trigtuple)
    };
    let Some((touch_att, fp_att)) = cfg.tracking else {
        return pg_sys::Datum::from(new);
    };
    let fp = WRITER.with(|w| {
        let mut w = w.borrow_mut();
        write_fields(&cfg, &mut w, new, desc, |f| !f.volatile);
        fingerprint::of_canonical(w.finish())
    });
    if enqueue && own_write && cfg.ownership_guard && only_remote_owned_changed(&cfg, old, new, desc) {
        enqueue = false;
    }
    if enqueue {
        let new_key = key_of(&cfg, new, desc);
        match old {
            None => buffer::push(cfg.link_id, Op::Upsert, origin, new_key),
            Some(old) => {
                let old_key = key_of(&cfg, old, desc);
                if old_key != new_key {
                    buffer::push(cfg.link_id, Op::Delete, origin, old_key);
                    buffer::push(cfg.link_id, Op::Upsert, origin, new_key);
                } else if changed(&cfg, old, new, desc, fp_att, &fp) {
                    buffer::push(cfg.link_id, Op::Upsert, origin, new_key);
                }
            }
        }
    }
    let touch = origin.unwrap_or(LOCAL_TOUCH);
    if text_attr(new, touch_att, desc) == Some(touch) && text_attr(new, fp_att, desc) == Some(fp.as_str()) {
        return pg_sys::Datum::from(new);
    }
    let mut cols = [touch_att as i32, fp_att as i32];
    let mut values = [text_datum(touch), text_datum(&fp)];
    let mut nulls = [false, false];
    pg_sys::Datum::from(pg_sys::heap_modify_tuple_by_cols(
        new,
        desc,
        2,
        cols.as_mut_ptr(),
        values.as_mut_ptr(),
        nulls.as_mut_ptr(),
    ))
}

/// Whether an update is worth sending: a watched field changed (links that watch fields),
/// else the fingerprint changed (or the old row has none yet).
unsafe fn changed(
    cfg: &CaptureConfig,
    old: pg_sys::HeapTuple,
    new: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    fp_att: i16,
    new_fp: &str,
) -> bool {
    if !cfg.has_watched {
        return text_attr(old, fp_att, desc) != Some(new_fp);
    }
    let mut before = RecordWriter::new();
    let mut after = RecordWriter::new();
    write_fields(cfg, &mut before, old, desc, |f| f.watched);
    write_fields(cfg, &mut after, new, desc, |f| f.watched);
    before.finish() != after.finish()
}

/// The `ownership` guard's question for a write under the link's own flag: did it change
/// only fields the remote owns? (An insert "changes" every field.)
unsafe fn only_remote_owned_changed(
    cfg: &CaptureConfig,
    old: Option<pg_sys::HeapTuple>,
    new: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
) -> bool {
    let text = |tuple: pg_sys::HeapTuple, f: &config::CapturedField| {
        let mut w = RecordWriter::new();
        w.begin();
        let mut isnull = false;
        let datum = pg_sys::heap_getattr(tuple, f.codec.attnum as i32, desc, &mut isnull);
        f.codec.write(&mut w, &f.remote, datum, isnull);
        w.finish().to_string()
    };
    cfg.fields
        .iter()
        .filter(|f| !f.volatile)
        .all(|f| f.remote_owned || old.is_some_and(|old| text(old, f) == text(new, f)))
}

unsafe fn write_fields(
    cfg: &CaptureConfig,
    w: &mut RecordWriter,
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    keep: impl Fn(&config::CapturedField) -> bool,
) {
    w.begin();
    for f in cfg.fields.iter().filter(|f| keep(f)) {
        let mut isnull = false;
        let datum = pg_sys::heap_getattr(tuple, f.codec.attnum as i32, desc, &mut isnull);
        f.codec.write(w, &f.remote, datum, isnull);
    }
}

unsafe fn key_of(cfg: &CaptureConfig, tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc) -> String {
    let mut isnull = false;
    let datum = pg_sys::heap_getattr(tuple, cfg.key.attnum as i32, desc, &mut isnull);
    trigger::key_text(cfg, datum, isnull)
}

/// A text column's value, or `None` for NULL.
unsafe fn text_attr<'a>(tuple: pg_sys::HeapTuple, attnum: i16, desc: pg_sys::TupleDesc) -> Option<&'a str> {
    let mut isnull = false;
    let datum = pg_sys::heap_getattr(tuple, attnum as i32, desc, &mut isnull);
    if isnull {
        return None;
    }
    let text = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
    let len = pgrx::varlena::varsize_any_exhdr(text);
    let data = pgrx::varlena::vardata_any(text) as *const u8;
    std::str::from_utf8(std::slice::from_raw_parts(data, len)).ok()
}

unsafe fn text_datum(s: &str) -> pg_sys::Datum {
    pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(s.as_ptr().cast(), s.len() as i32))
}
