//! Writes into a link's table for a set of records, under the link's origin flag, in the
//! order of the records: a run of consecutive records with the same kind of write and the
//! same columns is one statement, which handles its rows in order. So the table sees the
//! writes in the order one record after the other would make them: generated keys are
//! handed out alike, and a unique value one record frees is free for the records after it,
//! not before.

use crate::catalog::link::LinkRow;
use crate::error::SyncError;
use crate::origin;
use crate::spi::jsonb::Jsonb;
use crate::table::{Access, TableStatements};
use pgrx::datum::DatumWithOid;
use pgrx::PgSqlErrorCode;
use serde_json::{Map, Value};
use std::collections::HashMap;

type Row = Map<String, Value>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Delete,
    /// Mark deleted in this column.
    SoftDelete(String),
    /// Write these columns of existing rows.
    Update(Vec<String>),
    /// Insert rows with these columns (the others take their defaults).
    Insert(Vec<String>),
}

/// One statement: its kind and, per row, the record's slot (its place in the set), the local
/// key (not for inserts) and the values (not for deletes).
struct Run {
    kind: Kind,
    rows: Vec<(usize, String, Row)>,
}

/// The writes of a set of records, in record order. Each write that stores a row names the
/// record's slot, under which the stored row comes back.
#[derive(Default)]
pub struct TableWrites {
    runs: Vec<Run>,
}

impl TableWrites {
    pub fn delete(&mut self, key: String) {
        self.push(Kind::Delete, 0, key, Row::new());
    }

    pub fn soft_delete(&mut self, key: String, column: &str) {
        self.push(Kind::SoftDelete(column.to_owned()), 0, key, Row::new());
    }

    pub fn update(&mut self, slot: usize, key: String, values: Row) {
        self.push(Kind::Update(values.keys().cloned().collect()), slot, key, values);
    }

    pub fn insert(&mut self, slot: usize, values: Row) {
        self.push(Kind::Insert(values.keys().cloned().collect()), slot, String::new(), values);
    }

    /// Raises the error of a value its column does not accept before anything is written,
    /// if it would come after an insert: the insert would have taken values of the table's
    /// sequences (not given back when the writes are rolled back), and the records, applied
    /// again in smaller parts, would get other generated keys than one after the other. (An
    /// insert reads all its values before it inserts a row; a failure of another kind after
    /// an insert still leaves a gap in the sequence.)
    fn check_values_after_first_insert(&self, table: &TableStatements) {
        let Some(first) = self.runs.iter().position(|r| matches!(r.kind, Kind::Insert(_))) else { return };
        let later: Vec<Value> = self.runs[first + 1..]
            .iter()
            .flat_map(|r| r.rows.iter().map(|(_, _, values)| values))
            .filter(|values| !values.is_empty())
            .map(|values| Value::Object(values.clone()))
            .collect();
        if !later.is_empty() {
            table.run(Access::Check, &[], &[Jsonb(Value::Array(later)).into()]);
        }
    }

    fn push(&mut self, kind: Kind, slot: usize, key: String, values: Row) {
        match self.runs.last_mut() {
            Some(run) if run.kind == kind => run.rows.push((slot, key, values)),
            _ => self.runs.push(Run { kind, rows: vec![(slot, key, values)] }),
        }
    }

    /// Runs the writes under the link's origin flag and returns the stored rows (after
    /// defaults and the table's own triggers) by slot.
    pub fn run(self, link: &LinkRow, table: &TableStatements) -> HashMap<usize, Row> {
        self.check_values_after_first_insert(table);
        origin::with_origin(&link.name, || {
            let mut stored = HashMap::new();
            for run in self.runs {
                run.write(link, table, &mut stored);
            }
            stored
        })
    }
}

impl Run {
    fn write(self, link: &LinkRow, table: &TableStatements, stored: &mut HashMap<usize, Row>) {
        let mut slots = Vec::with_capacity(self.rows.len());
        let mut keys = Vec::with_capacity(self.rows.len());
        let mut values = Vec::with_capacity(self.rows.len());
        for (slot, key, row) in self.rows {
            slots.push(slot);
            keys.push(key);
            values.push(Value::Object(row));
        }
        match self.kind {
            Kind::Delete => table.run(Access::Delete, &[], &[keys.into()]),
            Kind::SoftDelete(column) => table.run(Access::SoftDelete, &[column], &[keys.into()]),
            Kind::Update(columns) => {
                let updated = stored_rows(table, Access::Update, &columns, &[keys.into(), json_array(values)]);
                let mut seen = vec![false; slots.len()];
                for (ord, row) in updated {
                    let i = ord.checked_sub(1).map(|i| i as usize).filter(|i| *i < slots.len() && !seen[*i]);
                    let Some(i) = i else { not_written(link).raise() };
                    seen[i] = true;
                    stored.insert(slots[i], row);
                }
                if seen.contains(&false) {
                    not_written(link).raise();
                }
            }
            Kind::Insert(columns) => {
                let inserted = stored_rows(table, Access::Insert, &columns, &[json_array(values)]);
                if inserted.len() != slots.len() {
                    not_written(link).raise();
                }
                for (slot, (_, row)) in slots.into_iter().zip(inserted) {
                    stored.insert(slot, row);
                }
            }
        }
    }
}

fn json_array(values: Vec<Value>) -> DatumWithOid<'static> {
    Jsonb(Value::Array(values)).into()
}

/// Runs a statement that returns (number, row as jsonb) pairs.
fn stored_rows(
    table: &TableStatements,
    access: Access,
    columns: &[String],
    args: &[DatumWithOid<'_>],
) -> Vec<(i64, Row)> {
    table.select(access, columns, args, |rows| {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            // A row is always an object; anything else would show as a row not written.
            if let (Some(ord), Some(Jsonb(Value::Object(stored)))) = (row.get::<i64>(1)?, row.get::<Jsonb>(2)?) {
                out.push((ord, stored));
            }
        }
        Ok(out)
    })
}

/// A write that stored no row: a BEFORE trigger of the table skipped it, or another
/// transaction deleted the row in between.
pub(super) fn not_written(link: &LinkRow) -> SyncError {
    SyncError::new(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("a record of link \"{}\" did not store a row in its table", link.name),
        "A BEFORE trigger of the table returned NULL, or another transaction deleted the row meanwhile; apply the record again.",
    )
}
