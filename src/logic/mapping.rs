//! Field mapping: which columns of the local table travel, under which remote names, and
//! with which per-field rules (owner, watched, volatile).

use super::link_spec::{ErrorKind, Side, SpecError};

/// Columns the extension adds to a linked table; they never travel.
pub const LAST_TOUCH_COLUMN: &str = "_sync_last_touch";
pub const FINGERPRINT_COLUMN: &str = "_sync_fingerprint";

/// How a column's values are written into canonical JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Bool,
    /// int2, int4, int8: written as JSON integers.
    Int,
    /// numeric, float4, float8: written as canonical numbers.
    Number,
    /// json, jsonb: written as canonical JSON.
    Json,
    /// timestamptz: written as UTC ISO 8601.
    TimestampTz,
    /// timestamp (without time zone): ISO 8601 with a `T`, as `to_jsonb` writes it.
    Timestamp,
    /// date: `YYYY-MM-DD`.
    Date,
    /// interval: ISO 8601 duration (`P1Y2M3DT4H5M6.5S`).
    Interval,
    /// bytea: `\\x` and hex digits.
    Bytes,
    /// Anything else: its text output, as a JSON string.
    Text,
}

/// A column of the local table as the catalog sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub attnum: i16,
    pub not_null: bool,
    /// How an incoming value is read for this column's type (see `Coerce`).
    pub coerce: Coerce,
}

/// How an incoming JSON value is read for its column, so that a remote that spells a value
/// differently (`"7.00"` for the numeric 7, `"t"` for true) is compared and written as the
/// value it means: a remote that normalises values then causes no writes and no loops.
/// Timestamps need nothing here: canonical JSON already reads them in any offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Coerce {
    /// smallint, integer, bigint, numeric, real, double precision: a string holding a
    /// number is that number.
    Number,
    /// boolean: the strings PostgreSQL's boolean input takes, and 0/1, are booleans.
    Bool,
    /// timestamp with time zone: taken as it comes (canonical JSON reads it in any offset);
    /// as a key, its text is the instant in UTC, as capture writes it (see [`Coerce::key_text`]).
    Instant,
    /// Anything else is taken as it comes.
    #[default]
    AsIs,
}

impl Coerce {
    /// From a type name as `format_type` writes it.
    pub fn of_type(type_name: &str) -> Self {
        let base = type_name.split('(').next().unwrap_or(type_name).trim();
        match base {
            "smallint" | "integer" | "bigint" | "numeric" | "real" | "double precision" => Coerce::Number,
            "boolean" => Coerce::Bool,
            "timestamp with time zone" => Coerce::Instant,
            _ => Coerce::AsIs,
        }
    }

    /// A key value of a row as `to_jsonb` gives it, as key text: the text capture writes for
    /// the same key (`capture::values::Codec::write_key`), whatever the session's `TimeZone`
    /// (`to_jsonb` writes a timestamptz in it). Strings as they are (dates and timestamps
    /// already come in ISO form), numbers canonical.
    pub fn key_text(self, v: &serde_json::Value) -> String {
        use serde_json::Value;
        match v {
            Value::String(s) if self == Coerce::Instant => {
                super::canonical::canonical_timestamp(s).unwrap_or_else(|| s.clone())
            }
            Value::String(s) => s.clone(),
            Value::Number(n) => super::canonical::canonical_number(&n.to_string()).unwrap_or_else(|| n.to_string()),
            other => other.to_string(),
        }
    }

    /// The value as this column means it; a value that does not fit is left as it is (its
    /// write then fails with the column type's own error).
    pub fn read(self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match (self, value) {
            (Coerce::Number, Value::String(s)) => match super::canonical::canonical_number(s.trim()) {
                Some(n) => serde_json::from_str::<Value>(&n).unwrap_or_else(|_| value.clone()),
                None => value.clone(),
            },
            (Coerce::Bool, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "t" | "true" | "y" | "yes" | "on" | "1" => Value::Bool(true),
                "f" | "false" | "n" | "no" | "off" | "0" => Value::Bool(false),
                _ => value.clone(),
            },
            (Coerce::Bool, Value::Number(n)) => match n.as_i64() {
                Some(1) => Value::Bool(true),
                Some(0) => Value::Bool(false),
                _ => value.clone(),
            },
            _ => value.clone(),
        }
    }
}

/// A per-field rule from `syncbridge.set_field`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldRule {
    pub column: String,
    pub remote_field: Option<String>,
    pub owner: Option<Side>,
    pub watched: bool,
    pub volatile: bool,
    pub synced: bool,
}

/// A column that travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub column: String,
    pub attnum: i16,
    pub remote: String,
    pub coerce: Coerce,
    pub owner: Option<Side>,
    pub watched: bool,
    pub volatile: bool,
    /// The remote name was given by a rule, not taken from the column.
    pub explicit_remote: bool,
}

/// The fields of a link, sorted by remote name so records can be written canonically in one
/// pass, plus the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMap {
    pub fields: Vec<Field>,
    /// The local key column (it travels too unless a rule says otherwise).
    pub key: Column,
}

impl FieldMap {
    /// Builds the map for `columns` with identity mapping unless a rule says otherwise. A rule
    /// whose column no longer exists (dropped or renamed since) is left out, so the table stays
    /// writable; `set_field` refuses to create such rules.
    pub fn build(columns: &[Column], rules: &[FieldRule], key_column: &str) -> Result<Self, SpecError> {
        let key = columns.iter().find(|c| c.name == key_column).cloned().ok_or_else(|| {
            SpecError::new(
                ErrorKind::UndefinedColumn,
                format!("key column \"{key_column}\" does not exist"),
                "Name an existing unique, NOT NULL column as key_column.",
            )
        })?;
        let mut fields = Vec::with_capacity(columns.len());
        for col in columns {
            if is_reserved(&col.name) {
                continue;
            }
            let rule = rules.iter().find(|r| r.column == col.name);
            if rule.is_some_and(|r| !r.synced) {
                continue;
            }
            let remote = rule.and_then(|r| r.remote_field.clone()).unwrap_or_else(|| col.name.clone());
            let explicit_remote = rule.is_some_and(|r| r.remote_field.is_some());
            fields.push(Field {
                column: col.name.clone(),
                attnum: col.attnum,
                remote,
                coerce: col.coerce,
                owner: rule.and_then(|r| r.owner),
                watched: rule.is_some_and(|r| r.watched),
                volatile: rule.is_some_and(|r| r.volatile),
                explicit_remote,
            });
        }
        fields.sort_by(|a, b| a.remote.cmp(&b.remote));
        if let Some(pair) = fields.windows(2).find(|w| w[0].remote == w[1].remote) {
            return Err(SpecError::new(
                ErrorKind::DuplicateObject,
                format!(
                    "columns \"{}\" and \"{}\" both map to remote field \"{}\"",
                    pair[0].column, pair[1].column, pair[0].remote
                ),
                "Give one of them another remote_field, or set synced => false on one.",
            ));
        }
        if fields.is_empty() {
            return Err(SpecError::new(
                ErrorKind::InvalidTable,
                "the link has no field to synchronise",
                "Keep at least one column synced (set_field ... synced => true).",
            ));
        }
        Ok(Self { fields, key })
    }

    /// Fields that count for the fingerprint (all but the volatile ones).
    pub fn fingerprinted(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| !f.volatile)
    }

    /// Fields whose change makes an edit worth sending; empty when every change counts.
    pub fn watched(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.watched)
    }

    pub fn has_watched(&self) -> bool {
        self.fields.iter().any(|f| f.watched)
    }

    pub fn by_remote(&self, remote: &str) -> Option<&Field> {
        self.fields.binary_search_by(|f| f.remote.as_str().cmp(remote)).ok().map(|i| &self.fields[i])
    }
}

/// Columns the extension owns.
pub fn is_reserved(column: &str) -> bool {
    column == LAST_TOUCH_COLUMN || column == FINGERPRINT_COLUMN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_their_column_means_them() {
        use serde_json::json;
        assert_eq!(Coerce::of_type("numeric(12,2)"), Coerce::Number);
        assert_eq!(Coerce::of_type("double precision"), Coerce::Number);
        assert_eq!(Coerce::of_type("boolean"), Coerce::Bool);
        assert_eq!(Coerce::of_type("timestamp with time zone"), Coerce::Instant);
        assert_eq!(Coerce::of_type("timestamp without time zone"), Coerce::AsIs);
        assert_eq!(Coerce::of_type("text"), Coerce::AsIs);
        assert_eq!(Coerce::Instant.read(&json!("2024-03-01T09:00:00+09:00")), json!("2024-03-01T09:00:00+09:00"));
        let canon = |v: &serde_json::Value| crate::logic::canonical::to_canonical(v);
        for spelled in [json!("7.00"), json!("7.00000"), json!(" 7 "), json!(7), json!("7e0")] {
            assert_eq!(canon(&Coerce::Number.read(&spelled)), canon(&json!(7.0)), "{spelled}");
        }
        assert_eq!(Coerce::Number.read(&json!("seven")), json!("seven"));
        assert_eq!(Coerce::AsIs.read(&json!("7.00")), json!("7.00"));
        for (spelled, b) in [(json!("t"), true), (json!("FALSE"), false), (json!(1), true), (json!("off"), false)] {
            assert_eq!(Coerce::Bool.read(&spelled), json!(b), "{spelled}");
        }
        assert_eq!(Coerce::Bool.read(&json!("maybe")), json!("maybe"));
    }

    #[test]
    fn key_text_is_what_capture_writes_whatever_the_session_time_zone() {
        use serde_json::json;
        // to_jsonb writes a timestamptz in the session's TimeZone; capture writes UTC.
        for spelled in ["2024-03-01T09:00:00+09:00", "2024-02-29T20:30:00-03:30", "2024-03-01T00:00:00+00:00"] {
            assert_eq!(Coerce::Instant.key_text(&json!(spelled)), "2024-03-01T00:00:00Z", "{spelled}");
        }
        assert_eq!(Coerce::Instant.key_text(&json!("2024-07-04T21:30:00.25+09:00")), "2024-07-04T12:30:00.25Z");
        assert_eq!(Coerce::Instant.key_text(&json!("infinity")), "infinity");
        // Other types' keys as they always were: a text key that looks like a time stays as it is.
        assert_eq!(Coerce::AsIs.key_text(&json!("2024-03-01T09:00:00+09:00")), "2024-03-01T09:00:00+09:00");
        assert_eq!(Coerce::AsIs.key_text(&json!("2024-01-31")), "2024-01-31");
        assert_eq!(Coerce::Number.key_text(&serde_json::from_str::<serde_json::Value>("7.50").unwrap()), "7.5");
        assert_eq!(Coerce::Number.key_text(&json!(42)), "42");
    }

    fn col(name: &str, attnum: i16) -> Column {
        Column { name: name.into(), attnum, not_null: false, coerce: Coerce::AsIs }
    }

    fn table() -> Vec<Column> {
        vec![col("id", 1), col("name", 2), col("email", 3), col(LAST_TOUCH_COLUMN, 4), col(FINGERPRINT_COLUMN, 5)]
    }

    #[test]
    fn identity_mapping_sorted_by_remote_name_without_sync_columns() {
        let m = FieldMap::build(&table(), &[], "id").unwrap();
        let names: Vec<_> = m.fields.iter().map(|f| f.remote.as_str()).collect();
        assert_eq!(names, ["email", "id", "name"]);
        assert_eq!(m.key.name, "id");
        assert!(!m.has_watched());
    }

    #[test]
    fn rules_rename_exclude_and_flag_fields() {
        let rules = vec![
            FieldRule {
                column: "name".into(),
                remote_field: Some("full_name".into()),
                owner: Some(Side::Remote),
                synced: true,
                ..Default::default()
            },
            FieldRule { column: "email".into(), watched: true, volatile: true, synced: true, ..Default::default() },
        ];
        let m = FieldMap::build(&table(), &rules, "id").unwrap();
        let f = m.by_remote("full_name").unwrap();
        assert_eq!((f.column.as_str(), f.owner), ("name", Some(Side::Remote)));
        assert!(m.has_watched());
        assert_eq!(m.fingerprinted().count(), 2);
        let excluded = vec![FieldRule { column: "email".into(), synced: false, ..Default::default() }];
        let m = FieldMap::build(&table(), &excluded, "id").unwrap();
        assert!(m.by_remote("email").is_none());
    }

    #[test]
    fn clashing_remote_names_are_refused() {
        let rules = vec![FieldRule {
            column: "name".into(),
            remote_field: Some("email".into()),
            synced: true,
            ..Default::default()
        }];
        let err = FieldMap::build(&table(), &rules, "id").unwrap_err();
        assert_eq!(err.kind, ErrorKind::DuplicateObject);
        assert!(err.message.contains("\"email\""), "{}", err.message);
    }

    #[test]
    fn rules_of_vanished_columns_are_left_out_but_an_unknown_key_is_refused() {
        let rules = vec![FieldRule {
            column: "nope".into(),
            remote_field: Some("x".into()),
            synced: true,
            ..Default::default()
        }];
        let m = FieldMap::build(&table(), &rules, "id").unwrap();
        assert!(m.by_remote("x").is_none());
        assert_eq!(m.fields.len(), 3);
        assert_eq!(FieldMap::build(&table(), &[], "nope").unwrap_err().kind, ErrorKind::UndefinedColumn);
    }
}
