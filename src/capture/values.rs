//! Reading column values out of tuples into canonical JSON (for fingerprints) and into key
//! text, without going through SQL.

use crate::logic::canonical;
use crate::logic::fingerprint::RecordWriter;
use crate::logic::mapping::ValueKind;
use pgrx::pg_sys;
use pgrx::FromDatum;
use std::ffi::CStr;
use std::fmt::Write;

/// Seconds between 1970-01-01 and 2000-01-01, PostgreSQL's timestamp epoch.
const PG_EPOCH_OFFSET_SECS: i64 = 946_684_800;

/// How to turn one column's datums into JSON or text.
#[derive(Debug, Clone)]
pub struct Codec {
    pub attnum: i16,
    pub kind: ValueKind,
    /// Base type (domains resolved).
    pub typid: pg_sys::Oid,
    pub output_fn: pg_sys::Oid,
}

impl Codec {
    pub fn new(attnum: i16, typid: pg_sys::Oid) -> Self {
        let base = unsafe { pg_sys::getBaseType(typid) };
        let mut output_fn = pg_sys::InvalidOid;
        let mut is_varlena = false;
        unsafe { pg_sys::getTypeOutputInfo(base, &mut output_fn, &mut is_varlena) };
        Self { attnum, kind: kind_of(base), typid: base, output_fn }
    }

    /// The type's text output, as PostgreSQL prints it.
    ///
    /// # Safety
    /// `datum` must be a non-null value of this codec's type.
    unsafe fn output(&self, datum: pg_sys::Datum) -> String {
        let p = pg_sys::OidOutputFunctionCall(self.output_fn, datum);
        let s = CStr::from_ptr(p).to_string_lossy().into_owned();
        pg_sys::pfree(p.cast());
        s
    }

    /// Writes the value as a field of a canonical record.
    ///
    /// # Safety
    /// `datum` must be a value of this codec's type (ignored when `isnull`).
    pub unsafe fn write(&self, w: &mut RecordWriter, name: &str, datum: pg_sys::Datum, isnull: bool) {
        if isnull {
            return w.null(name);
        }
        match self.kind {
            ValueKind::Bool => w.bool(name, datum.value() != 0),
            ValueKind::Int => w.int(name, self.int(datum)),
            ValueKind::Number => match self.typid {
                pg_sys::FLOAT8OID => w.number_text(name, &float_text(f64::from_bits(datum.value() as u64))),
                pg_sys::FLOAT4OID => w.number_text(name, &float_text(f32::from_bits(datum.value() as u32))),
                _ => w.number_text(name, &self.output(datum)),
            },
            ValueKind::Timestamp => match timestamp_local(datum.value() as i64) {
                Some(text) => w.string(name, &text),
                None => w.string(name, &self.output(datum)),
            },
            ValueKind::Date => match date_text(datum.value() as i32) {
                Some(text) => w.string(name, &text),
                None => w.string(name, &self.output(datum)),
            },
            ValueKind::Interval => {
                let iv = &*(datum.cast_mut_ptr::<pg_sys::Interval>());
                w.string(name, &canonical::format_interval(iv.month, iv.day, iv.time))
            }
            ValueKind::Bytes => {
                let bytes = <&[u8]>::from_datum(datum, false).unwrap_or_default();
                let mut hex = String::with_capacity(2 + bytes.len() * 2);
                hex.push_str("\\x");
                for b in bytes {
                    let _ = write!(hex, "{b:02x}");
                }
                w.string(name, &hex)
            }
            ValueKind::TimestampTz => {
                let micros = datum.value() as i64;
                if micros == i64::MAX || micros == i64::MIN {
                    w.string(name, &self.output(datum))
                } else {
                    w.utc(name, micros.div_euclid(1_000_000) + PG_EPOCH_OFFSET_SECS, micros.rem_euclid(1_000_000))
                }
            }
            ValueKind::Json => {
                let text = self.output(datum);
                match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(v) => w.json(name, &v),
                    Err(_) => w.string(name, &text),
                }
            }
            ValueKind::Text => match self.typid {
                pg_sys::TEXTOID | pg_sys::VARCHAROID => {
                    let s = <&str>::from_datum(datum, false).unwrap_or_default();
                    w.string(name, s)
                }
                _ => w.string(name, &self.output(datum)),
            },
        }
    }

    /// The value as key text (what the outbox and the id map store).
    ///
    /// # Safety
    /// `datum` must be a non-null value of this codec's type.
    pub unsafe fn key_text(&self, datum: pg_sys::Datum) -> String {
        match (self.kind, self.typid) {
            (ValueKind::Int, _) => {
                let mut s = String::with_capacity(20);
                canonical::push_int(&mut s, self.int(datum));
                s
            }
            (_, pg_sys::TEXTOID | pg_sys::VARCHAROID) => {
                <&str>::from_datum(datum, false).unwrap_or_default().to_string()
            }
            _ => self.output(datum),
        }
    }

    fn int(&self, datum: pg_sys::Datum) -> i64 {
        match self.typid {
            pg_sys::INT2OID => datum.value() as i16 as i64,
            pg_sys::INT4OID => datum.value() as i32 as i64,
            _ => datum.value() as i64,
        }
    }
}

fn kind_of(base: pg_sys::Oid) -> ValueKind {
    match base {
        pg_sys::BOOLOID => ValueKind::Bool,
        pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID => ValueKind::Int,
        pg_sys::NUMERICOID | pg_sys::FLOAT4OID | pg_sys::FLOAT8OID => ValueKind::Number,
        pg_sys::JSONOID | pg_sys::JSONBOID => ValueKind::Json,
        pg_sys::TIMESTAMPTZOID => ValueKind::TimestampTz,
        pg_sys::TIMESTAMPOID => ValueKind::Timestamp,
        pg_sys::DATEOID => ValueKind::Date,
        pg_sys::INTERVALOID => ValueKind::Interval,
        pg_sys::BYTEAOID => ValueKind::Bytes,
        _ => ValueKind::Text,
    }
}

/// Days between 1970-01-01 and 2000-01-01.
const PG_EPOCH_OFFSET_DAYS: i64 = 10_957;

/// A float as shortest round-trip text, with PostgreSQL's spellings of the non-finite values
/// (which then travel as strings: JSON has no NaN). Independent of `extra_float_digits`.
fn float_text<F: std::fmt::Debug + Into<f64> + Copy>(f: F) -> String {
    let v: f64 = f.into();
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        format!("{f:?}")
    }
}

/// A timestamp (microseconds since 2000-01-01, no zone) as `to_jsonb` writes it; `None` for
/// infinities and years outside 1..=9999, which are left to the type's output.
fn timestamp_local(micros_since_2000: i64) -> Option<String> {
    if micros_since_2000 == i64::MAX || micros_since_2000 == i64::MIN {
        return None;
    }
    let secs = micros_since_2000.div_euclid(1_000_000) + PG_EPOCH_OFFSET_SECS;
    canonical::format_local(secs, micros_since_2000.rem_euclid(1_000_000))
}

/// A date (days since 2000-01-01) as `YYYY-MM-DD`; `None` for infinities and odd years.
fn date_text(days_since_2000: i32) -> Option<String> {
    if days_since_2000 == i32::MAX || days_since_2000 == i32::MIN {
        return None;
    }
    canonical::format_date(days_since_2000 as i64 + PG_EPOCH_OFFSET_DAYS)
}
