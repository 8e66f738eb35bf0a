//! The local table of a link: is it linkable, and which column is its key.

use crate::error::{Result, SyncError};
use crate::logic::mapping;
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct TableInfo {
    pub relkind: String,
    pub persistence: String,
    pub schema: String,
    pub display: String,
    pub columns: Vec<ColumnInfo>,
    pub primary_key: Vec<String>,
    pub unique_columns: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    pub attnum: i16,
    pub not_null: bool,
    #[serde(rename = "type")]
    pub type_name: String,
}

impl TableInfo {
    pub fn load(relid: pg_sys::Oid) -> Result<Self> {
        let info =
            crate::error::spi_opt::<JsonB>(include_str!("table_info.sql"), &[relid.into()])?.ok_or_else(|| {
                SyncError::new(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                    format!("relation with OID {relid:?} does not exist"),
                    "Pass an existing table, e.g. 'public.accounts'::regclass.",
                )
            })?;
        serde_json::from_value(info.0).map_err(|e| SyncError::internal(format!("unexpected table description: {e}")))
    }

    /// A link needs a permanent, ordinary (or partitioned) table outside the extension.
    pub fn check_linkable(&self) -> Result<()> {
        if !matches!(self.relkind.as_str(), "r" | "p") {
            return Err(SyncError::new(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("\"{}\" is not a table", self.display),
                "Only ordinary and partitioned tables can be linked; link the table behind a view.",
            ));
        }
        if self.persistence == "t" {
            return Err(SyncError::new(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("\"{}\" is a temporary table", self.display),
                "The background worker cannot see temporary tables; link a permanent table.",
            ));
        }
        if self.schema == "syncbridge" {
            return Err(SyncError::new(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("\"{}\" belongs to pg_syncbridge", self.display),
                "Link one of your own tables.",
            ));
        }
        Ok(())
    }

    /// The key column: the one named, which must be NOT NULL and unique on its own, or else
    /// the single-column primary key.
    pub fn resolve_key(&self, key_column: Option<&str>) -> Result<String> {
        match key_column {
            Some(col) => {
                let info = self.columns.iter().find(|c| c.name == col).ok_or_else(|| self.no_column(col))?;
                if mapping::is_reserved(col) {
                    return Err(SyncError::new(
                        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                        format!("column \"{col}\" is maintained by pg_syncbridge and cannot be a key"),
                        "Name a unique, NOT NULL column of your own as key_column.",
                    ));
                }
                if !info.not_null || !self.unique_columns.iter().any(|u| u == col) {
                    return Err(SyncError::new(
                        PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
                        format!("column \"{col}\" of \"{}\" is not a usable key", self.display),
                        format!("A key column must be NOT NULL and have a unique index of its own: ALTER TABLE {} ADD UNIQUE ({col}), ALTER COLUMN {col} SET NOT NULL.", self.display),
                    ));
                }
                Ok(col.to_string())
            }
            None => match self.primary_key.as_slice() {
                [single] => Ok(single.clone()),
                [] => Err(SyncError::new(
                    PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
                    format!("table \"{}\" has no primary key", self.display),
                    "Add a primary key, or pass key_column => a unique, NOT NULL column.",
                )),
                many => Err(SyncError::new(
                    PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
                    format!("the primary key of \"{}\" has {} columns", self.display, many.len()),
                    "pg_syncbridge pairs records by one column: pass key_column => a unique, NOT NULL column.",
                )),
            },
        }
    }

    pub fn no_column(&self, col: &str) -> SyncError {
        SyncError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("column \"{col}\" of \"{}\" does not exist", self.display),
            format!(
                "Columns of {}: {}.",
                self.display,
                self.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )
    }

    pub fn has_column(&self, col: &str) -> bool {
        self.columns.iter().any(|c| c.name == col)
    }
}
