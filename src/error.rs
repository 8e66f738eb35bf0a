//! User-facing errors: every one has a SQLSTATE, a message that names the object, and a hint
//! that says what to do.

use crate::logic::link_spec::{ErrorKind, SpecError};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

#[derive(Debug, Clone)]
pub struct SyncError {
    pub code: PgSqlErrorCode,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

pub type Result<T> = std::result::Result<T, SyncError>;

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl SyncError {
    pub fn new(code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { code, message: message.into(), detail: None, hint: Some(hint.into()) }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Raises the error as a PostgreSQL ERROR; does not return.
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(self.code, self.message, "");
        if let Some(detail) = self.detail {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    }

    /// Something that cannot happen unless pg_syncbridge has a bug: the one wording of it.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            message,
            "This is a bug in pg_syncbridge; please report it with the statement that caused it.",
        )
    }

    /// A link that does not exist.
    pub fn no_such_link(name: &str) -> Self {
        Self::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("link \"{name}\" does not exist"),
            "See SELECT name FROM syncbridge.links for the links there are.",
        )
    }
}

impl From<ErrorKind> for PgSqlErrorCode {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidValue => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            ErrorKind::InvalidName => PgSqlErrorCode::ERRCODE_INVALID_NAME,
            ErrorKind::UndefinedColumn => PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            ErrorKind::UndefinedObject => PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            ErrorKind::DuplicateObject => PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            ErrorKind::InvalidTable => PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION,
            ErrorKind::WrongState => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        }
    }
}

impl From<SpecError> for SyncError {
    fn from(e: SpecError) -> Self {
        Self::new(e.kind.into(), e.message, e.hint)
    }
}

impl From<pgrx::spi::Error> for SyncError {
    fn from(e: pgrx::spi::Error) -> Self {
        Self::internal(format!("pg_syncbridge catalog access failed: {e}"))
    }
}

/// Unwraps a result or raises its error.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T, E: Into<SyncError>> OrRaise<T> for std::result::Result<T, E> {
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.into().raise(),
        }
    }
}

/// `Spi::get_one_with_args` that reads "no row" as `None` instead of an error.
pub fn spi_opt<'mcx, T: pgrx::FromDatum + pgrx::IntoDatum>(
    query: &str,
    args: &[pgrx::datum::DatumWithOid<'mcx>],
) -> Result<Option<T>> {
    match pgrx::Spi::get_one_with_args::<T>(query, args) {
        Ok(v) => Ok(v),
        Err(pgrx::spi::Error::InvalidPosition) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
