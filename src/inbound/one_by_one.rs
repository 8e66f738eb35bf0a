//! Applying one record on its own, in its own subtransaction, so that a record that cannot
//! be applied fails alone with its reason while the others go on: the last step of
//! `Batch::apply_part`, which halves a set of records that cannot be applied together (two
//! of them touch the same record or row, or the set's write failed: a value a column does
//! not accept, a constraint) until the parts can, or are single records.

use super::journal::Journal;
use super::{Batch, Read, Row};
use crate::logic::inbound::Incoming;
use crate::logic::status::Status;
use crate::spi::jsonb::Jsonb;
use crate::spi::subxact;
use crate::table::Access;
use serde_json::{Map, Value};

impl Batch {
    pub(super) fn apply_alone(&self, record: &Read) -> Row {
        let (key_hint, reason) = match record {
            Err(unread) => (unread.key_hint.clone(), unread.reason.clone()),
            Ok(inc) => match subxact::run_unless_transient(|| self.apply_together(std::slice::from_ref(record))) {
                Ok(Some(mut rows)) if rows.len() == 1 => return rows.remove(0),
                Ok(_) => unreachable!("one record gives one row and does not clash with itself"),
                Err(e) => (Some(inc.remote_key.clone()), self.name_the_field(inc).unwrap_or(e.message)),
            },
        };
        let mut journal = Journal::default();
        journal.event(None, key_hint.as_deref(), Status::Failed, Some(&reason), None);
        journal.write(self.link.id);
        (key_hint, None, Status::Failed.name().into(), Some(reason))
    }

    /// After a failed write: the first field whose value its column does not accept.
    fn name_the_field(&self, inc: &Incoming) -> Option<String> {
        let values: Map<String, Value> = inc
            .fields
            .iter()
            .filter_map(|(remote, v)| self.map.by_remote(remote).map(|f| (f.column.clone(), v.clone())))
            .collect();
        // One field at a time, each through the table's own input functions and domain
        // checks (as its owner), in a subtransaction that catches the error.
        // In the order jsonb gives object keys (shorter first), as the SQL helper did.
        let mut values: Vec<(String, Value)> = values.into_iter().collect();
        values.sort_by(|a, b| (a.0.len(), &a.0).cmp(&(b.0.len(), &b.0)));
        values.into_iter().find_map(|(column, value)| {
            let one = Value::Array(vec![Value::Object(Map::from_iter([(column.clone(), value)]))]);
            match subxact::run_unless_transient(|| self.statements.run(Access::Check, &[], &[Jsonb(one).into()])) {
                Ok(()) => None,
                Err(message) => Some(format!("field \"{column}\": {message}")),
            }
        })
    }
}
