//! Fingerprints: blake3 over the canonical JSON of a record's synced fields.
//!
//! A fingerprint names the *content* of a record as the other system sees it, so the same
//! record gives the same fingerprint whether it was read from a local row or received from
//! the remote. Volatile fields (a `last_synced_at` stamp the link writes itself) are left out,
//! otherwise every round trip would look like a change.

use super::canonical;
use serde_json::Value;

/// Length in hex characters of a stored fingerprint (128 bits).
pub const HEX_LEN: usize = 32;

/// Hashes canonical JSON text into the stored fingerprint form.
pub fn of_canonical(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex()[..HEX_LEN].to_owned()
}

/// The fingerprint of a JSON record, leaving out the top-level fields named in `volatile`.
/// A value that is not an object is fingerprinted as it is.
pub fn of_record(record: &Value, volatile: &[impl AsRef<str>]) -> String {
    match record {
        Value::Object(map) if !volatile.is_empty() => {
            let kept = map
                .iter()
                .filter(|(k, _)| !volatile.iter().any(|v| v.as_ref() == k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<serde_json::Map<_, _>>();
            of_canonical(&canonical::to_canonical(&Value::Object(kept)))
        }
        other => of_canonical(&canonical::to_canonical(other)),
    }
}

/// The fingerprint of the object with these fields, leaving out those named in `volatile`:
/// the same as [`of_record`] of that object, without building it.
pub fn of_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a Value)>, volatile: &[impl AsRef<str>]) -> String {
    let mut kept: Vec<(&str, &Value)> =
        fields.into_iter().filter(|(k, _)| !volatile.iter().any(|v| v.as_ref() == *k)).collect();
    kept.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(64 * kept.len() + 2);
    out.push('{');
    for (i, (key, value)) in kept.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        canonical::write_json_string(key, &mut out);
        out.push(':');
        canonical::write_value(value, &mut out);
    }
    out.push('}');
    of_canonical(&out)
}

/// Builds canonical JSON for one record field by field, without a `serde_json::Value` in
/// between: the capture trigger uses it once per row. Fields must be added in the order of
/// their (remote) names, which `mapping::FieldMap` guarantees.
#[derive(Default)]
pub struct RecordWriter {
    buf: String,
    fields: usize,
}

impl RecordWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new record, keeping the buffer's allocation.
    pub fn begin(&mut self) {
        self.buf.clear();
        self.buf.push('{');
        self.fields = 0;
    }

    fn key(&mut self, name: &str) {
        if self.fields > 0 {
            self.buf.push(',');
        }
        self.fields += 1;
        canonical::write_json_string(name, &mut self.buf);
        self.buf.push(':');
    }

    pub fn null(&mut self, name: &str) {
        self.key(name);
        self.buf.push_str("null");
    }

    pub fn bool(&mut self, name: &str, value: bool) {
        self.key(name);
        self.buf.push_str(if value { "true" } else { "false" });
    }

    pub fn int(&mut self, name: &str, value: i64) {
        self.key(name);
        canonical::push_int(&mut self.buf, value);
    }

    /// A number given as text (`numeric`, `float8` output); non-finite values become strings,
    /// as JSON has no NaN or Infinity.
    pub fn number_text(&mut self, name: &str, text: &str) {
        self.key(name);
        match canonical::canonical_number(text) {
            Some(n) => self.buf.push_str(&n),
            None => canonical::write_json_string(text, &mut self.buf),
        }
    }

    /// A `numeric` in its stored form (see [`canonical::push_base10000`]).
    pub fn base10000(&mut self, name: &str, negative: bool, weight: i32, digits: &[i16]) {
        self.key(name);
        canonical::push_base10000(negative, weight, digits, &mut self.buf);
    }

    /// A string that is compared as written.
    pub fn string(&mut self, name: &str, value: &str) {
        self.key(name);
        canonical::write_string(value, &mut self.buf);
    }

    /// A string already in canonical form (the trigger's own UTC timestamps): written as is,
    /// without looking for a timestamp in it again.
    pub fn canonical_string(&mut self, name: &str, value: &str) {
        self.key(name);
        canonical::write_json_string(value, &mut self.buf);
    }

    /// Appends a UTC timestamp (seconds since 1970 plus microseconds) in canonical form.
    pub fn utc(&mut self, name: &str, secs: i64, micros: i64) {
        self.key(name);
        self.buf.push('"');
        canonical::write_utc(secs, micros, &mut self.buf);
        self.buf.push('"');
    }

    /// A value that is already JSON (a `json`/`jsonb` column).
    pub fn json(&mut self, name: &str, value: &Value) {
        self.key(name);
        canonical::write_value(value, &mut self.buf);
    }

    /// Closes the record and returns its canonical text.
    pub fn finish(&mut self) -> &str {
        self.buf.push('}');
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NONE: [&str; 0] = [];

    #[test]
    fn key_order_does_not_change_the_fingerprint() {
        let a: Value = serde_json::from_str(r#"{"name":"Ada","id":7}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"id":7,"name":"Ada"}"#).unwrap();
        assert_eq!(of_record(&a, &NONE), of_record(&b, &NONE));
    }

    #[test]
    fn number_format_does_not_change_the_fingerprint() {
        let a: Value = serde_json::from_str(r#"{"amount":1}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"amount":1.0}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"amount":1.00}"#).unwrap();
        assert_eq!(of_record(&a, &NONE), of_record(&b, &NONE));
        assert_eq!(of_record(&a, &NONE), of_record(&c, &NONE));
    }

    #[test]
    fn timestamps_are_compared_in_utc() {
        let a = json!({"at": "2024-05-01T12:00:00+02:00"});
        let b = json!({"at": "2024-05-01 10:00:00+00"});
        assert_eq!(of_record(&a, &NONE), of_record(&b, &NONE));
    }

    #[test]
    fn a_changed_value_changes_the_fingerprint() {
        let a = json!({"id": 1, "name": "Ada"});
        let b = json!({"id": 1, "name": "Ada L."});
        assert_ne!(of_record(&a, &NONE), of_record(&b, &NONE));
        assert_ne!(of_record(&json!({"x": 1}), &NONE), of_record(&json!({"x": "1"}), &NONE));
        assert_ne!(of_record(&json!({"x": null}), &NONE), of_record(&json!({}), &NONE));
    }

    #[test]
    fn volatile_fields_are_left_out() {
        let a = json!({"id": 1, "last_synced_at": "2024-01-01T00:00:00Z"});
        let b = json!({"id": 1, "last_synced_at": "2025-06-01T00:00:00Z"});
        assert_ne!(of_record(&a, &NONE), of_record(&b, &NONE));
        assert_eq!(of_record(&a, &["last_synced_at"]), of_record(&b, &["last_synced_at"]));
        assert_eq!(of_record(&a, &["last_synced_at"]), of_record(&json!({"id": 1}), &NONE));
    }

    #[test]
    fn the_writer_agrees_with_the_value_path() {
        let mut w = RecordWriter::new();
        w.begin();
        w.number_text("amount", "12.50");
        w.int("id", 7);
        w.null("note");
        w.bool("ok", true);
        w.string("when", "2024-01-01 10:00:00+02");
        let streamed = of_canonical(w.finish());
        let value = json!({"id": 7, "amount": 12.5, "ok": true, "note": null, "when": "2024-01-01T08:00:00Z"});
        assert_eq!(streamed, of_record(&value, &NONE));
    }

    #[test]
    fn fields_fingerprint_as_their_object() {
        let record = json!({"b": [1.0, {"y": 2, "x": "2024-01-01T10:00:00+02:00"}], "a": null, "c": "t", "v": 1});
        let map = record.as_object().unwrap();
        let fields = map.iter().rev().map(|(k, v)| (k.as_str(), v));
        assert_eq!(of_fields(fields.clone(), &NONE), of_record(&record, &NONE), "any order");
        assert_eq!(of_fields(fields, &["v"]), of_record(&record, &["v"]));
        assert_eq!(of_fields(std::iter::empty(), &NONE), of_record(&json!({}), &NONE));
    }

    #[test]
    fn fingerprints_have_a_fixed_length() {
        assert_eq!(of_record(&json!({}), &NONE).len(), HEX_LEN);
        let text = "{}";
        assert_eq!(of_canonical(text), blake3::hash(text.as_bytes()).to_hex()[..HEX_LEN]);
    }

    #[test]
    fn the_utc_shortcut_agrees_with_the_string_path() {
        let mut a = RecordWriter::new();
        a.begin();
        a.utc("at", 1_714_564_800, 500_000);
        let mut b = RecordWriter::new();
        b.begin();
        b.string("at", "2024-05-01T14:00:00.5+02:00");
        assert_eq!(a.finish(), b.finish());
    }
}
