//! The statements that read and write a linked table — the only way pg_syncbridge touches
//! one, inbound and outbound. SQL writes them (`syncbridge._statement`: identifiers quoted
//! with %I and regclass, the key cast to its column's type), once per call and kind of
//! access; they are prepared once per session (`spi::plans`) and run as the table's owner
//! (`owner`, security-restricted unless the owner is a superuser) with `search_path =
//! pg_catalog, pg_temp`, as a function with that SET clause runs its body: the table's own
//! triggers see the search path they saw when these writes ran inside SQL helper functions.

mod owner;

pub use owner::as_table_owner;

use crate::catalog::link::LinkRow;
use crate::error::OrRaise;
use crate::spi::jsonb::Jsonb;
use crate::spi::plans;
use crate::spi::subxact;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::spi::SpiTupleTable;
use std::cell::RefCell;
use std::collections::HashMap;

/// What a statement does (see `syncbridge._statement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Each key with its row as jsonb.
    Rows,
    Update,
    Insert,
    Delete,
    SoftDelete,
    /// Raises the error of a value its column does not accept.
    Check,
    /// The keys of all rows as text, in arrays of up to 1,000, in key order.
    Keys,
    /// Writes remote ids into the link's remote-id column (`columns[0]`), for pairs of local
    /// and remote keys.
    StoreIds,
}

impl Access {
    fn name(self) -> &'static str {
        match self {
            Access::Rows => "rows",
            Access::Update => "update",
            Access::Insert => "insert",
            Access::Delete => "delete",
            Access::SoftDelete => "soft_delete",
            Access::Check => "check",
            Access::Keys => "keys",
            Access::StoreIds => "store_ids",
        }
    }
}

/// A row as [`TableStatements::rows_or_errors`] read it.
#[derive(Debug, Clone)]
pub enum Read {
    Row(serde_json::Map<String, serde_json::Value>),
    /// The error reading it.
    Unreadable(String),
}

/// The statements of one call on one link's table, written as they are first needed.
pub struct TableStatements {
    relid: pg_sys::Oid,
    key_column: String,
    texts: RefCell<HashMap<(Access, Vec<String>), String>>,
}

impl TableStatements {
    pub fn new(link: &LinkRow) -> Self {
        Self { relid: link.relid(), key_column: link.key_column.clone(), texts: RefCell::new(HashMap::new()) }
    }

    /// The rows with these keys as JSON objects (local column names), by the key text they
    /// were asked for; keys without a row are left out. A key that does not fit the key
    /// column's type raises the type's error.
    pub fn rows(&self, keys: Vec<&str>) -> HashMap<String, serde_json::Map<String, serde_json::Value>> {
        if keys.is_empty() {
            return HashMap::new();
        }
        self.select(Access::Rows, &[], &[keys.into()], |rows| {
            let mut found = HashMap::with_capacity(rows.len());
            for row in rows {
                if let (Some(key), Some(Jsonb(serde_json::Value::Object(local)))) =
                    (row.get::<String>(1)?, row.get::<Jsonb>(2)?)
                {
                    found.insert(key, local);
                }
            }
            Ok(found)
        })
    }

    /// Like [`Self::rows`], but a row that cannot be read (a key its column's type does not
    /// accept, a value the reader refuses such as jsonb nested too deep) is an error of its
    /// own key, not of the call, and never looks like a missing row: a key left out of the
    /// answer was looked up and has no row. All keys are read in one statement; when that
    /// fails, each key alone. A cancel or a lock timeout is raised, not blamed on a row.
    pub fn rows_or_errors(&self, keys: Vec<&str>) -> HashMap<String, Read> {
        let whole = || self.rows(keys.clone()).into_iter().map(|(k, row)| (k, Read::Row(row))).collect();
        match subxact::run_unless_transient(whole) {
            Ok(found) => found,
            Err(e) if keys.len() == 1 => HashMap::from([(keys[0].to_owned(), Read::Unreadable(e.message))]),
            Err(_) => {
                let mut found = HashMap::with_capacity(keys.len());
                for key in keys {
                    match subxact::run_unless_transient(|| self.rows(vec![key])) {
                        Ok(rows) => found.extend(rows.into_iter().map(|(k, row)| (k, Read::Row(row)))),
                        Err(e) => {
                            found.insert(key.to_owned(), Read::Unreadable(e.message));
                        }
                    }
                }
                found
            }
        }
    }

    /// Runs the statement of `access` (on `columns`) with `args` and hands its rows to `read`.
    pub fn select<R>(
        &self,
        access: Access,
        columns: &[String],
        args: &[DatumWithOid<'_>],
        read: impl FnOnce(SpiTupleTable<'_>) -> Result<R, pgrx::spi::Error>,
    ) -> R {
        let text = self.text(access, columns);
        as_table_owner(self.relid, || as_function_body(|| plans::select(&text, args, read)))
    }

    /// Runs the statement of `access` (on `columns`) with `args` for its effect.
    pub fn run(&self, access: Access, columns: &[String], args: &[DatumWithOid<'_>]) {
        self.select(access, columns, args, |_| Ok(()))
    }

    fn text(&self, access: Access, columns: &[String]) -> String {
        let key = (access, columns.to_vec());
        if let Some(text) = self.texts.borrow().get(&key) {
            return text.clone();
        }
        let text = crate::error::spi_opt::<String>(
            "SELECT syncbridge._statement($1::regclass, $2, $3, $4::name[])",
            &[self.relid.into(), self.key_column.as_str().into(), access.name().into(), columns.to_vec().into()],
        )
        .or_raise()
        .unwrap_or_default();
        self.texts.borrow_mut().insert(key, text.clone());
        text
    }
}

/// Runs `body` with `search_path = pg_catalog, pg_temp`, put back afterwards as PostgreSQL
/// does for a function with that SET clause (on an ERROR the (sub)transaction's abort puts
/// it back).
fn as_function_body<R>(body: impl FnOnce() -> R) -> R {
    crate::spi::guc::with_settings(&[(c"search_path", c"pg_catalog, pg_temp")], body)
}
