//! Applying one record on its own, in its own subtransaction, so that a record that cannot
//! be applied fails alone with its reason while the others go on: the last step of
//! `Batch::apply_part`, which halves a set of records that cannot be applied together (two
//! of them touch the same record or row, or the set's write failed: a value a column does
//! not accept, a constraint) until the parts can, or are single records.

use super::journal::Journal;
use super::{subxact, Batch, Read, Row};
use crate::error::{spi_opt, OrRaise};
use crate::jsonb::Jsonb;
use crate::logic::inbound::Incoming;
use serde_json::{Map, Value};

impl Batch {
    pub(super) fn apply_alone(&self, record: &Read) -> Row {
        let (key_hint, reason) = match record {
            Err(unread) => (unread.key_hint.clone(), unread.reason.clone()),
            Ok(inc) => match subxact::run_unless_transient(|| self.apply_together(std::slice::from_ref(record))) {
                Ok(Some(mut rows)) if rows.len() == 1 => return rows.remove(0),
                Ok(_) => unreachable!("one record gives one row and does not clash with itself"),
                Err(message) => (Some(inc.remote_key.clone()), self.name_the_field(inc).unwrap_or(message)),
            },
        };
        let mut journal = Journal::default();
        journal.event(None, key_hint.as_deref(), "failed", Some(&reason), None);
        journal.write(self.link.id);
        (key_hint, None, "failed".into(), Some(reason))
    }

    /// After a failed write: the first field whose value its column does not accept.
    fn name_the_field(&self, inc: &Incoming) -> Option<String> {
        let values: Map<String, Value> = inc
            .fields
            .iter()
            .filter_map(|(remote, v)| self.map.by_remote(remote).map(|f| (f.column.clone(), v.clone())))
            .collect();
        subxact::run_unless_transient(|| {
            spi_opt::<String>(
                "SELECT syncbridge._misfit_field($1::regclass, $2)",
                &[self.link.relid().into(), Jsonb(Value::Object(values)).into()],
            )
            .or_raise()
        })
        .ok()
        .flatten()
    }
}
