//! Reading column values out of tuples into canonical JSON (for fingerprints) and into key
//! text, without going through SQL.

use crate::logic::canonical;
use crate::logic::fingerprint::RecordWriter;
use crate::logic::mapping::ValueKind;
use crate::spi::encoding::utf8_database;
use pgrx::pg_sys;
use pgrx::FromDatum;
use std::ffi::CStr;
use std::fmt::Write;

/// Seconds between 1970-01-01 and 2000-01-01, PostgreSQL's timestamp epoch.
const PG_EPOCH_OFFSET_SECS: i64 = 946_684_800;

/// Seconds since 1970-01-01 UTC from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z: the
/// instants whose UTC text has a four-digit year and no era.
const UTC_YEARS_1_TO_9999: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

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
        // SAFETY: a syscache lookup by type OID on the backend's main thread inside a transaction; `typid` comes from
        // the relation's tuple descriptor, so the type exists.
        let base = unsafe { pg_sys::getBaseType(typid) };
        let mut output_fn = pg_sys::InvalidOid;
        let mut is_varlena = false;
        // SAFETY: as above, for `base`, the existing base type; both out-pointers are locals.
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
                _ => match numeric_parts(datum) {
                    Some((negative, weight, stored)) => {
                        let mut small = [0i16; 32];
                        let mut large = Vec::new();
                        let digits: &mut [i16] = if stored.len() / 2 <= small.len() {
                            &mut small[..stored.len() / 2]
                        } else {
                            large.resize(stored.len() / 2, 0);
                            &mut large
                        };
                        for (d, b) in digits.iter_mut().zip(stored.chunks_exact(2)) {
                            *d = i16::from_ne_bytes([b[0], b[1]]);
                        }
                        w.base10000(name, negative, weight, digits)
                    }
                    None => w.number_text(name, &self.output(datum)),
                },
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
                pg_sys::TEXTOID | pg_sys::VARCHAROID => w.string(name, &text_of(datum)),
                _ => w.string(name, &self.output(datum)),
            },
        }
    }

    /// The value as key text (what the outbox and the id map store).
    ///
    /// # Safety
    /// `datum` must be a non-null value of this codec's type.
    pub unsafe fn key_text(&self, datum: pg_sys::Datum) -> String {
        let mut s = String::new();
        self.write_key(datum, &mut s);
        s
    }

    /// Appends [`Self::key_text`] to `out` (the row trigger's path, without an allocation).
    ///
    /// Key text is the same whatever the writer's session settings, so that the worker (and
    /// every other session) reads it back as the same value: a `timestamptz` is written in UTC
    /// (`2024-03-01T00:00:00Z`, [`canonical::write_utc`]), a `date` or `timestamp` in ISO form
    /// as `to_jsonb` writes it (`2024-01-31`, `2024-01-31T10:00:00`), all independent of
    /// `TimeZone` and `DateStyle`. Values outside years 1..=9999 (and the infinities) take the
    /// type's output under `DateStyle = ISO` and `TimeZone = UTC`. Every other type keeps its
    /// output (integers, text, numeric, uuid: as they always were).
    ///
    /// # Safety
    /// `datum` must be a non-null value of this codec's type.
    pub unsafe fn write_key(&self, datum: pg_sys::Datum, out: &mut String) {
        match (self.kind, self.typid) {
            (ValueKind::Int, _) => canonical::push_int(out, self.int(datum)),
            (_, pg_sys::TEXTOID | pg_sys::VARCHAROID) => out.push_str(&text_of(datum)),
            (ValueKind::TimestampTz, _) => {
                let micros = datum.value() as i64;
                let secs = micros.div_euclid(1_000_000) + PG_EPOCH_OFFSET_SECS;
                if micros != i64::MAX && micros != i64::MIN && UTC_YEARS_1_TO_9999.contains(&secs) {
                    canonical::write_utc(secs, micros.rem_euclid(1_000_000), out)
                } else {
                    out.push_str(&self.output_iso(datum))
                }
            }
            (ValueKind::Timestamp, _) => match timestamp_local(datum.value() as i64) {
                Some(text) => out.push_str(&text),
                None => out.push_str(&self.output_iso(datum)),
            },
            (ValueKind::Date, _) => match date_text(datum.value() as i32) {
                Some(text) => out.push_str(&text),
                None => out.push_str(&self.output_iso(datum)),
            },
            _ => out.push_str(&self.output(datum)),
        }
    }

    /// The type's output under `DateStyle = ISO, YMD` and `TimeZone = UTC`, whatever the
    /// session's settings (put back afterwards, as for a function with those SET clauses).
    ///
    /// # Safety
    /// `datum` must be a non-null value of this codec's type; on the backend's main thread
    /// inside a transaction.
    unsafe fn output_iso(&self, datum: pg_sys::Datum) -> String {
        // SAFETY: `datum` is a non-null value of this codec's type, on the main thread in a
        // transaction (the caller's guarantee).
        crate::spi::guc::with_settings(&[(c"DateStyle", c"ISO, YMD"), (c"TimeZone", c"UTC")], || unsafe {
            self.output(datum)
        })
    }

    fn int(&self, datum: pg_sys::Datum) -> i64 {
        match self.typid {
            pg_sys::INT2OID => datum.value() as i16 as i64,
            pg_sys::INT4OID => datum.value() as i32 as i64,
            _ => datum.value() as i64,
        }
    }
}

/// A `text`/`varchar` value as a string: borrowed as it is stored when the database
/// encoding is UTF-8 (PostgreSQL has validated it on the way in), else converted lossily.
///
/// # Safety
/// `datum` must be a non-null varlena.
pub(crate) unsafe fn text_of<'a>(datum: pg_sys::Datum) -> std::borrow::Cow<'a, str> {
    let p = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
    let len = pgrx::varlena::varsize_any_exhdr(p);
    let bytes = std::slice::from_raw_parts(pgrx::varlena::vardata_any(p) as *const u8, len);
    if utf8_database() {
        std::borrow::Cow::Borrowed(std::str::from_utf8_unchecked(bytes))
    } else {
        String::from_utf8_lossy(bytes)
    }
}

// `numeric_parts` reads the on-disk layout of `numeric` as PostgreSQL 15's numeric.c defines it
// (header bits, short and long forms). That layout is not part of any API: built for another
// server version, this code must be re-checked against that version's numeric.c first. This
// compile-time check is the real guard for the running server too: pgrx's `pg_module_magic!`
// stamps PG_VERSION_NUM / 100 into the library's magic block, and PostgreSQL refuses to load a
// library built for another major version, so no check at load time is needed.
#[cfg(not(feature = "pg15"))]
compile_error!(
    "capture/values.rs: numeric_parts reads the on-disk numeric layout of PostgreSQL 15 (numeric.c); \
     re-check it against the target version's numeric.c before building for another server version"
);
const _: () = assert!(
    pg_sys::PG_VERSION_NUM >= 150000 && pg_sys::PG_VERSION_NUM < 160000,
    "numeric_parts reads PostgreSQL 15's on-disk numeric layout; re-check it for this server version"
);

/// A finite `numeric` in its stored form: (negative, weight, base-10000 digits as stored:
/// 16-bit words in native byte order); `None` for
/// NaN and the infinities. Reads the on-disk layout of PostgreSQL 15 (`numeric.c`): a short
/// header (sign, display scale and weight in one 16-bit word) or a long one (sign and scale,
/// then a 16-bit weight), followed by the digits.
///
/// # Safety
/// `datum` must be a non-null `numeric`.
unsafe fn numeric_parts<'a>(datum: pg_sys::Datum) -> Option<(bool, i32, &'a [u8])> {
    const SIGN_MASK: u16 = 0xC000;
    const NEG: u16 = 0x4000;
    const SHORT: u16 = 0x8000;
    const SPECIAL: u16 = 0xC000;
    const SHORT_SIGN: u16 = 0x2000;
    const SHORT_WEIGHT_SIGN: u16 = 0x0040;
    const SHORT_WEIGHT: u16 = 0x003F;
    let p = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
    let len = pgrx::varlena::varsize_any_exhdr(p);
    let bytes = std::slice::from_raw_parts(pgrx::varlena::vardata_any(p) as *const u8, len);
    let word = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let header = word(0)?;
    let (negative, weight, start) = match header & SIGN_MASK {
        SPECIAL => return None,
        SHORT => {
            let magnitude = (header & SHORT_WEIGHT) as i32;
            let weight = if header & SHORT_WEIGHT_SIGN != 0 { magnitude | !(SHORT_WEIGHT as i32) } else { magnitude };
            (header & SHORT_SIGN != 0, weight, 2)
        }
        sign => (sign == NEG, word(2)? as i16 as i32, 4),
    };
    Some((negative, weight, &bytes[start..]))
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
