//! Backfill: the keys of a linked table's existing rows, for `syncbridge.backfill` to put in
//! the outbox. Read as the table's owner, like every statement on a linked table: the key
//! type's output and comparison functions may be the owner's code.

use crate::catalog::link::LinkRow;
use crate::error::{OrRaise, SyncError};
use crate::table::{Access, TableStatements};
use pgrx::prelude::*;

/// The keys of every row of the link's table, in arrays of up to 1,000 in key order.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn _backfill_keys(link_id: i64) -> SetOfIterator<'static, Vec<String>> {
    let link = LinkRow::load_all()
        .or_raise()
        .into_iter()
        .find(|l| l.id == link_id)
        .unwrap_or_else(|| SyncError::no_such_link(&format!("#{link_id}")).raise());
    let chunks = TableStatements::new(&link).select(Access::Keys, &[], &[], |rows| {
        rows.map(|r| r.get::<Vec<String>>(1).map(Option::unwrap_or_default)).collect::<Result<Vec<_>, _>>()
    });
    SetOfIterator::new(chunks)
}
