//! Writing keys to the outbox: one cached plan, one execution per chunk of keys.

use pgrx::prelude::*;
use pgrx::IntoDatum;
use std::cell::Cell;
use std::ffi::CString;

/// Keys per outbox row: large statements are split so the worker can claim them in pieces.
pub const KEYS_PER_ROW: usize = 1000;

const INSERT: &str =
    "INSERT INTO syncbridge.outbox (link_id, op, keys, origin) VALUES ($1, $2, $3, $4)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Upsert,
    Delete,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Upsert => "upsert",
            Op::Delete => "delete",
        }
    }
}

thread_local! {
    static PLAN: Cell<pg_sys::SPIPlanPtr> = const { Cell::new(std::ptr::null_mut()) };
}

/// Inserts `keys` for `link_id` into the outbox, in the caller's transaction.
pub fn enqueue(link_id: i64, op: Op, keys: &[String], origin: Option<&str>) {
    if keys.is_empty() {
        return;
    }
    unsafe {
        connect();
        let plan = plan();
        let op_datum = op.as_str().into_datum().expect("text datum");
        let origin_datum = origin.and_then(|o| o.into_datum());
        for chunk in keys.chunks(KEYS_PER_ROW) {
            let array = chunk
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .into_datum()
                .expect("text[] datum");
            let mut values = [
                link_id.into_datum().expect("int8 datum"),
                op_datum,
                array,
                origin_datum.unwrap_or(pg_sys::Datum::from(0)),
            ];
            let nulls = CString::new(if origin_datum.is_some() {
                "    "
            } else {
                "   n"
            })
            .expect("no NUL");
            let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0);
            if rc != pg_sys::SPI_OK_INSERT as i32 {
                error!("pg_syncbridge: outbox insert failed with SPI code {rc}");
            }
        }
        pg_sys::SPI_finish();
    }
}

unsafe fn connect() {
    let rc = pg_sys::SPI_connect();
    if rc != pg_sys::SPI_OK_CONNECT as i32 {
        error!("pg_syncbridge: SPI_connect failed with code {rc}");
    }
}

/// The prepared insert, kept for the life of the backend (the plan cache revalidates it).
unsafe fn plan() -> pg_sys::SPIPlanPtr {
    let cached = PLAN.with(Cell::get);
    if !cached.is_null() {
        return cached;
    }
    let sql = CString::new(INSERT).expect("no NUL");
    let mut types = [
        pg_sys::INT8OID,
        pg_sys::TEXTOID,
        pg_sys::TEXTARRAYOID,
        pg_sys::TEXTOID,
    ];
    let plan = pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr());
    if plan.is_null() {
        let code = std::ptr::read(&raw const pg_sys::SPI_result);
        error!("pg_syncbridge: could not prepare the outbox insert (SPI code {code})");
    }
    if pg_sys::SPI_keepplan(plan) != 0 {
        error!("pg_syncbridge: could not keep the outbox insert plan");
    }
    PLAN.with(|p| p.set(plan));
    plan
}
