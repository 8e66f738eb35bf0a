//! The statements apply runs, parsed and planned once per session: SPI plans kept for the
//! life of the backend, by statement text, which PostgreSQL plans again by itself when a
//! table or function they use changes (or the search path differs). Applied one record at a
//! time, parsing and planning would otherwise cost more than the work.

use crate::error::OrRaise;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::PgOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiTupleTable};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    static PLANS: RefCell<HashMap<String, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
}

/// Runs `query` with `args` and hands its rows to `read`. The parameter types are those of
/// the first call's arguments.
pub fn select<R>(
    query: &str,
    args: &[DatumWithOid<'_>],
    read: impl FnOnce(SpiTupleTable<'_>) -> Result<R, pgrx::spi::Error>,
) -> R {
    Spi::connect_mut(|c| {
        let cached = PLANS.with(|p| p.borrow().get(query).cloned());
        let plan = match cached {
            Some(plan) => plan,
            None => {
                let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
                let plan = Rc::new(c.prepare_mut(query, &types)?.keep());
                PLANS.with(|p| p.borrow_mut().insert(query.to_owned(), plan.clone()));
                plan
            }
        };
        // The map is not borrowed while the statement runs: it may apply records too.
        let rows = c.update(&*plan, None, args)?;
        read(rows)
    })
    .or_raise()
}

/// Runs `query` with `args` for its effect.
pub fn run(query: &str, args: &[DatumWithOid<'_>]) {
    select(query, args, |_| Ok(()))
}
