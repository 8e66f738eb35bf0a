//! Reading one incoming remote record: its key, the synced fields it carries (in remote
//! names), the local id it may name, and whether it carries fields the link does not know.
//! Each problem is a reason for that record alone; the rest of the batch goes on.

use super::canonical;
use super::mapping::FieldMap;
use serde_json::{Map, Value};

/// An incoming record, checked and mapped.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The remote key as text (a string as is, a number canonical).
    pub remote_key: String,
    /// The synced fields the record carries, by remote name.
    pub fields: Map<String, Value>,
    /// The local id the remote stored for this record (`local_id_field`), if any.
    pub local_id: Option<String>,
    /// A tombstone: the record was deleted remotely (`tombstone_field` is true).
    pub deleted: bool,
    /// The remote modification time (`remote_time_field`), as an instant, when given.
    pub modified: Option<(i64, i64)>,
}

/// What to do with fields the link does not map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownFields {
    Ignore,
    Fail,
}

/// How a link reads incoming records.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    pub remote_key_field: &'a str,
    pub local_id_field: Option<&'a str>,
    pub unknown: UnknownFields,
    /// The field that marks a tombstone (`{"id": ..., "_deleted": true}`).
    pub tombstone_field: &'a str,
    /// The field that carries the remote modification time (`newer_wins`).
    pub time_field: Option<&'a str>,
}

/// Checks and maps one record. The remote key field travels into a column only when a field
/// rule maps a column to it by name (`set_field(..., remote_field => 'id')`); with the
/// identity mapping the remote id and a local column that happens to share its name are
/// different things.
pub fn read(record: &Value, map: &FieldMap, how: Reading<'_>) -> Result<Incoming, String> {
    let Value::Object(obj) = record else {
        return Err("the record is not a JSON object".into());
    };
    let key_field = how.remote_key_field;
    let remote_key = key_text(obj.get(key_field)).map_err(|why| format!("key field \"{key_field}\" {why}"))?;
    let local_id = match how.local_id_field.and_then(|f| obj.get(f).map(|v| (f, v))) {
        None | Some((_, Value::Null)) => None,
        Some((f, v)) => Some(key_text(Some(v)).map_err(|why| format!("local id field \"{f}\" {why}"))?),
    };
    let mut fields = Map::new();
    for (name, value) in obj {
        let mapped = map.by_remote(name).filter(|f| name != key_field || f.explicit_remote);
        match mapped {
            Some(field) => {
                fields.insert(name.clone(), field.coerce.read(value));
            }
            None if name == key_field
                || Some(name.as_str()) == how.local_id_field
                || name == how.tombstone_field
                || Some(name.as_str()) == how.time_field => {}
            None if how.unknown == UnknownFields::Fail => {
                return Err(format!("unknown field \"{name}\""));
            }
            None => {}
        }
    }
    let deleted = obj.get(how.tombstone_field) == Some(&Value::Bool(true));
    let modified = match how.time_field.and_then(|f| obj.get(f).map(|v| (f, v))) {
        None | Some((_, Value::Null)) => None,
        Some((f, v)) => Some(
            v.as_str()
                .and_then(canonical::instant)
                .ok_or_else(|| format!("time field \"{f}\" is not a timestamp with a time zone"))?,
        ),
    };
    Ok(Incoming { remote_key, fields, local_id, deleted, modified })
}

/// A key value as text: strings as they are, numbers in canonical form.
fn key_text(value: Option<&Value>) -> Result<String, &'static str> {
    match value {
        None | Some(Value::Null) => Err("is missing"),
        Some(Value::String(s)) if s.is_empty() => Err("is empty"),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(canonical::canonical_number(&n.to_string()).unwrap_or_else(|| n.to_string())),
        Some(_) => Err("must be a string or a number"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::mapping::{Column, FieldRule};
    use serde_json::json;

    fn map(rules: &[FieldRule]) -> FieldMap {
        let cols = ["id", "name", "email", "crm_id"]
            .iter()
            .enumerate()
            .map(|(i, n)| Column {
                name: n.to_string(),
                attnum: i as i16 + 1,
                not_null: false,
                coerce: Default::default(),
            })
            .collect::<Vec<_>>();
        FieldMap::build(&cols, rules, "id").unwrap()
    }

    const HOW: Reading<'static> = Reading {
        remote_key_field: "id",
        local_id_field: None,
        unknown: UnknownFields::Ignore,
        tombstone_field: "_deleted",
        time_field: None,
    };

    #[test]
    fn values_are_read_for_their_column_type_so_a_respelled_echo_matches_the_row() {
        use crate::logic::mapping::Coerce;
        let col = |name: &str, attnum, coerce| Column { name: name.into(), attnum, not_null: false, coerce };
        let cols = [
            col("id", 1, Coerce::Number),
            col("balance", 2, Coerce::Number),
            col("active", 3, Coerce::Bool),
            col("note", 4, Coerce::AsIs),
        ];
        let m = FieldMap::build(&cols, &[], "id").unwrap();
        let got = read(&json!({"id": "c-1", "balance": "7.00000", "active": "t", "note": "7.00"}), &m, HOW).unwrap();
        // The local row as to_jsonb gives it: a number, a boolean, a text.
        let local = json!({"balance": 7.00, "active": true, "note": "7.00"});
        assert_eq!(
            crate::logic::canonical::to_canonical(&Value::Object(got.fields)),
            crate::logic::canonical::to_canonical(&local)
        );
    }

    #[test]
    fn maps_known_fields_and_keeps_the_remote_id_out_of_local_columns() {
        let m = map(&[]);
        let rec = json!({"id": 42, "name": "Ada", "extra": true});
        let got = read(&rec, &m, HOW).unwrap();
        assert_eq!(got.remote_key, "42");
        assert_eq!(Value::Object(got.fields), json!({"name": "Ada"}), "the remote id is not the local id");
    }

    #[test]
    fn an_explicit_rule_lets_the_remote_key_into_a_column() {
        let rules = [FieldRule {
            column: "crm_id".into(),
            remote_field: Some("id".into()),
            synced: true,
            ..Default::default()
        }];
        let rules2 = [rules[0].clone(), FieldRule { column: "id".into(), synced: false, ..Default::default() }];
        let got = read(&json!({"id": "c-1", "name": "Ada"}), &map(&rules2), HOW).unwrap();
        assert_eq!(Value::Object(got.fields), json!({"id": "c-1", "name": "Ada"}));
    }

    #[test]
    fn an_explicit_identity_rule_makes_the_remote_id_the_local_id() {
        let rules =
            [FieldRule { column: "id".into(), remote_field: Some("id".into()), synced: true, ..Default::default() }];
        let got = read(&json!({"id": "a", "name": "A"}), &map(&rules), HOW).unwrap();
        assert_eq!(Value::Object(got.fields), json!({"id": "a", "name": "A"}));
    }

    #[test]
    fn bad_keys_fail_with_a_reason_naming_the_field() {
        let m = map(&[]);
        assert_eq!(read(&json!({"name": "x"}), &m, HOW).unwrap_err(), "key field \"id\" is missing");
        assert_eq!(read(&json!({"id": null}), &m, HOW).unwrap_err(), "key field \"id\" is missing");
        assert_eq!(read(&json!({"id": [1]}), &m, HOW).unwrap_err(), "key field \"id\" must be a string or a number");
        assert_eq!(read(&json!({"id": ""}), &m, HOW).unwrap_err(), "key field \"id\" is empty");
        assert_eq!(read(&json!([1]), &m, HOW).unwrap_err(), "the record is not a JSON object");
        assert_eq!(read(&json!({"id": 1.0}), &m, HOW).unwrap().remote_key, "1");
    }

    #[test]
    fn unknown_fields_are_ignored_or_fail_by_policy() {
        let m = map(&[]);
        let strict = Reading { unknown: UnknownFields::Fail, ..HOW };
        assert_eq!(read(&json!({"id": 1, "nickname": "x"}), &m, strict).unwrap_err(), "unknown field \"nickname\"");
        assert!(read(&json!({"id": 1, "nickname": "x"}), &m, HOW).is_ok());
    }

    #[test]
    fn tombstones_and_times_are_read_and_not_mapped() {
        let how = Reading { time_field: Some("updated_at"), unknown: UnknownFields::Fail, ..HOW };
        let got = read(&json!({"id": 1, "_deleted": true, "updated_at": "2024-01-01T10:00:00+02:00"}), &map(&[]), how)
            .unwrap();
        assert!(got.deleted);
        assert_eq!(got.modified, canonical::instant("2024-01-01T08:00:00Z"));
        assert!(got.fields.is_empty());
        assert!(!read(&json!({"id": 1, "_deleted": false}), &map(&[]), how).unwrap().deleted);
        let err = read(&json!({"id": 1, "updated_at": "yesterday"}), &map(&[]), how).unwrap_err();
        assert_eq!(err, "time field \"updated_at\" is not a timestamp with a time zone");
    }

    #[test]
    fn the_local_id_field_is_read_and_not_mapped() {
        let how = Reading { local_id_field: Some("external_ref"), unknown: UnknownFields::Fail, ..HOW };
        let got = read(&json!({"id": 7, "external_ref": 15, "name": "Ada"}), &map(&[]), how).unwrap();
        assert_eq!(got.local_id.as_deref(), Some("15"));
        assert_eq!(Value::Object(got.fields), json!({"name": "Ada"}));
        let none = read(&json!({"id": 7, "external_ref": null}), &map(&[]), how).unwrap();
        assert_eq!(none.local_id, None);
    }
}
