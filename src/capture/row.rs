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
use super::values::text_of;
use super::{config, trigger};
use crate::logic::fingerprint::{self, RecordWriter};
use crate::logic::link_spec::LOCAL_TOUCH;
use crate::origin;
use crate::outbox::enqueue::Op;
use pgrx::prelude::*;
use std::cell::RefCell;

thread_local! {
    static WRITER: RefCell<RecordWriter> = RefCell::new(RecordWriter::new());
    /// Room for a new and an old key, reused from row to row.
    static KEYS: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
    /// A row's columns, taken apart once per call instead of once per synced field.
    static COLUMNS: RefCell<(Vec<pg_sys::Datum>, Vec<bool>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

crate::capture::trigger::finfo_v1!(pg_finfo_syncbridge_capture_row);

/// # Safety
/// Called by PostgreSQL as a trigger function.
#[unsafe(no_mangle)]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn syncbridge_capture_row(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    const FUNC: &str = "syncbridge._capture_row";
    let td = trigger::trigger_data(fcinfo, FUNC, true);
    let cfg = config::for_trigger(td, FUNC);
    let desc = (*td.tg_relation).rd_att;
    let origin = origin::current();
    let own_write = origin == Some(cfg.name.as_str());
    let mut enqueue = !(cfg.context_guard && own_write);
    let op = trigger::operation(td);

    if op == pg_sys::TRIGGER_EVENT_DELETE {
        if enqueue {
            KEYS.with(|k| {
                let (key, _) = &mut *k.borrow_mut();
                key_of(&cfg, td.tg_trigtuple, desc, key);
                buffer::push(cfg.link_id, Op::Delete, origin, key);
            });
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
    // The new row's tracking columns, from the columns write_fields has just taken apart.
    let (stored_touch, stored_fp) = COLUMNS.with(|c| {
        let (values, nulls) = &*c.borrow();
        let at = |att: i16| (!nulls[att as usize - 1]).then(|| values[att as usize - 1]);
        (at(touch_att), at(fp_att))
    });
    if enqueue && own_write && cfg.ownership_guard && only_remote_owned_changed(&cfg, old, new, desc) {
        enqueue = false;
    }
    if enqueue {
        KEYS.with(|k| {
            let (new_key, old_key) = &mut *k.borrow_mut();
            key_of(&cfg, new, desc, new_key);
            match old {
                None => buffer::push(cfg.link_id, Op::Upsert, origin, new_key),
                Some(old) => {
                    key_of(&cfg, old, desc, old_key);
                    if old_key != new_key {
                        buffer::push(cfg.link_id, Op::Delete, origin, old_key);
                        buffer::push(cfg.link_id, Op::Upsert, origin, new_key);
                    } else if changed(&cfg, old, new, desc, fp_att, &fp) {
                        buffer::push(cfg.link_id, Op::Upsert, origin, new_key);
                    }
                }
            }
        });
    }
    let touch = origin.unwrap_or(LOCAL_TOUCH);
    if stored_touch.is_some_and(|d| text_of(d) == touch) {
        match stored_fp {
            Some(d) if text_of(d) == fp => return pg_sys::Datum::from(new),
            // The usual case: only the fingerprint changed, and the column's default (or the
            // old fingerprint) has the room for the new one.
            Some(d) if owns_tuple(td, op, new) && overwrite(new, d, &fp) => return pg_sys::Datum::from(new),
            _ => {}
        }
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
///
/// # Safety
/// `old` and `new` must be tuples described by `desc`, the trigger's relation of `cfg`, during the trigger's call.
unsafe fn changed(
    cfg: &CaptureConfig,
    old: pg_sys::HeapTuple,
    new: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    fp_att: i16,
    new_fp: &str,
) -> bool {
    if !cfg.has_watched {
        return text_attr(old, fp_att, desc).as_deref() != Some(new_fp);
    }
    let mut before = RecordWriter::new();
    let mut after = RecordWriter::new();
    write_fields(cfg, &mut before, old, desc, |f| f.watched);
    write_fields(cfg, &mut after, new, desc, |f| f.watched);
    before.finish() != after.finish()
}

/// The `ownership` guard's question for a write under the link's own flag: did it change
/// only fields the remote owns? (An insert "changes" every field.)
///
/// # Safety
/// `old` (if any) and `new` must be tuples described by `desc`, the trigger's relation of `cfg`, during the trigger's
/// call.
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

/// # Safety
/// `tuple` must be a tuple described by `desc`, the trigger's relation of `cfg`, during the trigger's call.
unsafe fn write_fields(
    cfg: &CaptureConfig,
    w: &mut RecordWriter,
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    keep: impl Fn(&config::CapturedField) -> bool,
) {
    w.begin();
    COLUMNS.with(|columns| {
        let (values, nulls) = &mut *columns.borrow_mut();
        let natts = (*desc).natts as usize;
        values.resize(natts, pg_sys::Datum::from(0));
        nulls.resize(natts, true);
        pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
        for f in cfg.fields.iter().filter(|f| keep(f)) {
            let i = f.codec.attnum as usize - 1;
            f.codec.write(w, &f.remote, values[i], nulls[i]);
        }
    });
}

/// Writes the key of `tuple` into `out`.
///
/// # Safety
/// `tuple` must be a tuple described by `desc`, the trigger's relation of `cfg`, during the trigger's call.
unsafe fn key_of(cfg: &CaptureConfig, tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc, out: &mut String) {
    let mut isnull = false;
    let datum = pg_sys::heap_getattr(tuple, cfg.key.attnum as i32, desc, &mut isnull);
    trigger::write_key(cfg, datum, isnull, out)
}

/// Whether `tuple` is the very tuple the executor will store, in backend-local memory: the
/// materialized tuple of the trigger's heap slot. Only then may it be changed in place (and
/// returned as it is) instead of being copied with the changes.
///
/// # Safety
/// `td` must be the current trigger call's data (its slots valid or null).
unsafe fn owns_tuple(td: &pg_sys::TriggerData, op: u32, tuple: pg_sys::HeapTuple) -> bool {
    let slot = if op == pg_sys::TRIGGER_EVENT_UPDATE { td.tg_newslot } else { td.tg_trigslot };
    if slot.is_null() {
        return false;
    }
    let ops = (*slot).tts_ops;
    if std::ptr::eq(ops, &raw const pg_sys::TTSOpsHeapTuple) {
        (*(slot as *mut pg_sys::HeapTupleTableSlot)).tuple == tuple
    } else if std::ptr::eq(ops, &raw const pg_sys::TTSOpsBufferHeapTuple) {
        let slot = &*(slot as *mut pg_sys::BufferHeapTupleTableSlot);
        slot.base.tuple == tuple && slot.buffer == pg_sys::InvalidBuffer as pg_sys::Buffer
    } else {
        false
    }
}

/// Writes `text` over a text value stored inside `tuple` that has the same length (plain,
/// not compressed or out of line). Returns whether it did.
///
/// # Safety
/// `tuple` must be a valid tuple the caller may change in place, and `datum` a non-null text value (inside `tuple` or
/// not: that is checked).
unsafe fn overwrite(tuple: pg_sys::HeapTuple, datum: pg_sys::Datum, text: &str) -> bool {
    let p = datum.cast_mut_ptr::<pg_sys::varlena>();
    // Only bytes of the tuple itself (a value can also come from elsewhere: the default of a
    // column added later lives in the relation's descriptor, shared by every row).
    let start = (*tuple).t_data as usize;
    let end = start + (*tuple).t_len as usize;
    if !(start..end).contains(&(p as usize)) {
        return false;
    }
    if pgrx::varlena::varatt_is_1b_e(p) || pgrx::varlena::varatt_is_4b_c(p) {
        return false;
    }
    if (p as usize) + pgrx::varlena::varsize_any(p) > end {
        return false;
    }
    if pgrx::varlena::varsize_any_exhdr(p) != text.len() {
        return false;
    }
    let data = pgrx::varlena::vardata_any(p) as *mut u8;
    std::ptr::copy_nonoverlapping(text.as_ptr(), data, text.len());
    true
}

/// A text column's value, or `None` for NULL.
///
/// # Safety
/// `tuple` must be a tuple described by `desc`, and `attnum` a text column of it.
unsafe fn text_attr<'a>(
    tuple: pg_sys::HeapTuple,
    attnum: i16,
    desc: pg_sys::TupleDesc,
) -> Option<std::borrow::Cow<'a, str>> {
    let mut isnull = false;
    let datum = pg_sys::heap_getattr(tuple, attnum as i32, desc, &mut isnull);
    (!isnull).then(|| text_of(datum))
}

/// # Safety
/// On the backend's main thread inside a transaction: the text is palloc'd in the current memory context.
unsafe fn text_datum(s: &str) -> pg_sys::Datum {
    pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(s.as_ptr().cast(), s.len() as i32))
}
