//! BEFORE INSERT OR UPDATE FOR EACH ROW: stamps `_sync_last_touch` (`local` for a user edit,
//! the link name under the origin flag) and `_sync_fingerprint` (of the synced fields).

use super::{config, trigger};
use crate::logic::fingerprint::{self, RecordWriter};
use crate::logic::link_spec::LOCAL_TOUCH;
use crate::origin;
use pgrx::prelude::*;
use std::cell::RefCell;

thread_local! {
    static WRITER: RefCell<RecordWriter> = RefCell::new(RecordWriter::new());
}

#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_syncbridge_capture_row() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// # Safety
/// Called by PostgreSQL as a trigger function.
#[unsafe(no_mangle)]
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn syncbridge_capture_row(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    const FUNC: &str = "syncbridge._capture_row";
    let td = trigger::trigger_data(fcinfo, FUNC, true);
    let cfg = config::get(trigger::link_id(td, FUNC), td.tg_relation);
    let tuple = if trigger::operation(td) == pg_sys::TRIGGER_EVENT_UPDATE {
        td.tg_newtuple
    } else {
        td.tg_trigtuple
    };
    let Some((touch_att, fp_att)) = cfg.tracking else {
        return pg_sys::Datum::from(tuple);
    };
    let desc = (*td.tg_relation).rd_att;
    let touch = origin::current().unwrap_or(LOCAL_TOUCH);
    let fp = WRITER.with(|w| {
        let mut w = w.borrow_mut();
        w.begin();
        for f in cfg.fields.iter().filter(|f| !f.volatile) {
            let mut isnull = false;
            let datum = pg_sys::heap_getattr(tuple, f.codec.attnum as i32, desc, &mut isnull);
            f.codec.write(&mut w, &f.remote, datum, isnull);
        }
        fingerprint::of_canonical(w.finish())
    });
    if text_attr(tuple, touch_att, desc) == Some(touch)
        && text_attr(tuple, fp_att, desc) == Some(fp.as_str())
    {
        return pg_sys::Datum::from(tuple);
    }
    let mut cols = [touch_att as i32, fp_att as i32];
    let mut values = [text_datum(touch), text_datum(&fp)];
    let mut nulls = [false, false];
    let modified = pg_sys::heap_modify_tuple_by_cols(
        tuple,
        desc,
        2,
        cols.as_mut_ptr(),
        values.as_mut_ptr(),
        nulls.as_mut_ptr(),
    );
    pg_sys::Datum::from(modified)
}

/// A text column's value, or `None` for NULL.
unsafe fn text_attr<'a>(
    tuple: pg_sys::HeapTuple,
    attnum: i16,
    desc: pg_sys::TupleDesc,
) -> Option<&'a str> {
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
    pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
        s.as_ptr().cast(),
        s.len() as i32,
    ))
}
