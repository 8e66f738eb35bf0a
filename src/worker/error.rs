//! Why the worker could not do something for a link: an ERROR inside PostgreSQL (with its
//! SQLSTATE, so the log says which kind), or a problem of the link itself (the remote's
//! answer to a pull, a missing secret) that has no SQLSTATE.

use crate::error::SyncError;
use crate::spi::subxact::SqlError;

#[derive(Debug, Clone)]
pub enum WorkerError {
    Sql(SqlError),
    Link(String),
}

impl WorkerError {
    /// The SQLSTATE of an ERROR, if it was one.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            WorkerError::Sql(e) => Some(e.sqlstate()),
            WorkerError::Link(_) => None,
        }
    }
}

/// The message alone: what `link_status.last_error` shows.
impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerError::Sql(e) => f.write_str(&e.message),
            WorkerError::Link(m) => f.write_str(m),
        }
    }
}

impl From<SqlError> for WorkerError {
    fn from(e: SqlError) -> Self {
        WorkerError::Sql(e)
    }
}

impl From<SyncError> for WorkerError {
    fn from(e: SyncError) -> Self {
        WorkerError::Sql(SqlError { code: e.code, message: e.to_string() })
    }
}
