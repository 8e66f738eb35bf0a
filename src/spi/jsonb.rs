//! jsonb datums to and from `serde_json` values directly, walking and building the binary
//! form. pgrx's `JsonB` goes through text both ways (jsonb_out then a JSON parse to read,
//! printing then jsonb_in to store), which took a fifth of inbound apply's time: a batch of
//! records, the local rows it reads and the rows its writes return all cross here.
//!
//! Numbers keep their text, as they do through text (serde_json's `arbitrary_precision`):
//! `1.50` stays `1.50` both ways. What jsonb_in refuses is refused here too: a NUL character
//! in a string, nesting deeper than serde_json reads (128 levels). Strings are converted
//! between UTF-8 and the database encoding when that is not UTF-8.

use super::encoding::utf8_database;
use crate::error::SyncError;
use pgrx::callconv::{Arg, ArgAbi};
use pgrx::fcinfo::direct_function_call_as_datum;
use pgrx::nullable::Nullable;
use pgrx::pg_sys::{self, jbvType, JsonbIteratorToken as Token};
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::{FromDatum, IntoDatum, PgSqlErrorCode};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::ptr;

/// A jsonb value, read and written without its text form.
#[derive(Debug, Clone, PartialEq)]
pub struct Jsonb(pub Value);

/// Levels of nesting read at most, as serde_json reads text.
const MAX_DEPTH: usize = 128;

impl FromDatum for Jsonb {
    /// # Safety
    /// As [`FromDatum`] requires: a non-null `datum` is a (possibly toasted) jsonb, read on the backend's main
    /// thread.
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _typoid: pg_sys::Oid) -> Option<Self> {
        // SAFETY: not null here, and the caller guarantees (FromDatum's contract) that the datum is a jsonb.
        (!is_null).then(|| Jsonb(unsafe { to_value(datum) }))
    }
}

impl IntoDatum for Jsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        // SAFETY: pgrx converts return values and SPI arguments on the backend's main thread while a query runs, so
        // inside a transaction.
        Some(unsafe { from_value(&self.0) })
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

// SAFETY: arguments are unboxed through `FromDatum` above, which reads a jsonb: the SQL type `SqlTranslatable`
// declares for them.
unsafe impl<'fcx> ArgAbi<'fcx> for Jsonb {
    /// # Safety
    /// As [`ArgAbi`] requires: the argument is a non-null jsonb.
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: the argument is jsonb, as the caller guarantees (ArgAbi's contract); a null one comes back as None,
        // not read.
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| panic!("argument {index} must not be null"))
    }

    /// # Safety
    /// As [`ArgAbi`] requires: the argument is a jsonb or null.
    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: the argument is jsonb or null, as the caller guarantees; `FromDatum` turns null into None without
        // reading it.
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

// SAFETY: the SQL type declared here, jsonb, is the one `FromDatum`/`IntoDatum` above read and write (`type_oid` is
// JSONBOID).
unsafe impl SqlTranslatable for Jsonb {
    const TYPE_IDENT: &'static str = concat!(module_path!(), "::Jsonb");
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

/// The value of a jsonb datum.
///
/// # Safety
/// `datum` must be a (possibly toasted) jsonb, read on the backend's main thread (detoasting may
/// read the table and raise an ERROR).
pub unsafe fn to_value(datum: pg_sys::Datum) -> Value {
    // SAFETY: `datum` is a jsonb (the caller's guarantee); its detoasted root is what JsonbIteratorInit walks, and
    // `v` (a C struct, valid zeroed) is filled by JsonbIteratorNext before each read.
    unsafe {
        let jb = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::Jsonb;
        let mut it = pg_sys::JsonbIteratorInit(&mut (*jb).root);
        let mut v: pg_sys::JsonbValue = std::mem::zeroed();
        // Open containers, each with the key its next value goes under.
        let mut open: Vec<(Value, Option<String>)> = Vec::new();
        let mut raw_scalar = false;
        loop {
            match pg_sys::JsonbIteratorNext(&mut it, &mut v, false) {
                Token::WJB_BEGIN_OBJECT => {
                    too_deep(open.len());
                    open.push((Value::Object(Map::new()), None));
                }
                Token::WJB_BEGIN_ARRAY => {
                    too_deep(open.len());
                    // A scalar on its own is stored as a one-element "raw scalar" array.
                    raw_scalar |= open.is_empty() && v.val.array.rawScalar;
                    open.push((Value::Array(Vec::new()), None));
                }
                Token::WJB_KEY => {
                    if let Some((_, key)) = open.last_mut() {
                        *key = Some(text(&v).into_owned());
                    }
                }
                Token::WJB_VALUE | Token::WJB_ELEM => {
                    let value = scalar(&v);
                    add(&mut open, value);
                }
                Token::WJB_END_OBJECT | Token::WJB_END_ARRAY => {
                    let Some((done, _)) = open.pop() else { break };
                    if open.is_empty() {
                        return match done {
                            Value::Array(mut items) if raw_scalar && items.len() == 1 => items.remove(0),
                            other => other,
                        };
                    }
                    add(&mut open, done);
                }
                _ => break,
            }
        }
        Value::Null
    }
}

fn too_deep(depth: usize) {
    if depth >= MAX_DEPTH {
        SyncError::new(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("a jsonb value is nested more than {MAX_DEPTH} levels deep"),
            format!("pg_syncbridge reads JSON values nested at most {MAX_DEPTH} levels deep; flatten the value."),
        )
        .raise()
    }
}

fn add(open: &mut [(Value, Option<String>)], value: Value) {
    match open.last_mut() {
        Some((Value::Object(map), key)) => {
            map.insert(key.take().unwrap_or_default(), value);
        }
        Some((Value::Array(items), _)) => items.push(value),
        _ => {}
    }
}

/// A jsonb string (or key) as UTF-8.
///
/// # Safety
/// `v` must be a jbvString (a string or a key) of a jsonb read on the backend's main thread, its `val` pointing to
/// `len` bytes that outlive the result.
unsafe fn text(v: &pg_sys::JsonbValue) -> Cow<'_, str> {
    // SAFETY: `val.string` is the live union field, pointing to `len` bytes (the caller's guarantee); PostgreSQL
    // stores jsonb strings validated in the database encoding, so valid UTF-8 in a UTF-8 database; pg_server_to_any
    // returns its input or a NUL-terminated palloc'd copy.
    unsafe {
        let s = v.val.string;
        let bytes = std::slice::from_raw_parts(s.val as *const u8, s.len as usize);
        if utf8_database() {
            // PostgreSQL validated it on the way in.
            return Cow::Borrowed(std::str::from_utf8_unchecked(bytes));
        }
        let converted = pg_sys::pg_server_to_any(s.val, s.len, pg_sys::pg_enc::PG_UTF8 as i32);
        if converted == s.val {
            // No conversion (SQL_ASCII): the bytes are whatever was stored.
            String::from_utf8_lossy(bytes)
        } else {
            Cow::Owned(CStr::from_ptr(converted).to_string_lossy().into_owned())
        }
    }
}

/// # Safety
/// `v` must be a scalar that JsonbIteratorNext filled (its `type_` names the live union field), read on the backend's
/// main thread inside a transaction.
unsafe fn scalar(v: &pg_sys::JsonbValue) -> Value {
    // SAFETY: each arm reads the union field `type_` names (the caller's guarantee); a jbvNumeric points to a valid
    // numeric, and numeric_out returns a NUL-terminated palloc'd string.
    unsafe {
        match v.type_ {
            jbvType::jbvString => Value::String(text(v).into_owned()),
            jbvType::jbvBool => Value::Bool(v.val.boolean),
            jbvType::jbvNumeric => {
                let out =
                    direct_function_call_as_datum(pg_sys::numeric_out, &[Some(pg_sys::Datum::from(v.val.numeric))])
                        .expect("numeric_out returns a string");
                let digits = CStr::from_ptr(out.cast_mut_ptr::<std::ffi::c_char>()).to_string_lossy();
                // numeric_out writes NaN and Infinity, which jsonb never holds.
                digits.parse::<Number>().map(Value::Number).unwrap_or_else(|_| Value::String(digits.into_owned()))
            }
            _ => Value::Null,
        }
    }
}

/// A jsonb datum holding `value`, in the current memory context.
///
/// # Safety
/// Must be called on the backend's main thread, inside a transaction (it pallocs and may raise an
/// ERROR).
pub unsafe fn from_value(value: &Value) -> pg_sys::Datum {
    // SAFETY: on the backend's main thread in a transaction (the caller's guarantee); each value pushed is
    // initialised (zeroed, then its type and field set), BEGIN/END pushes pair up, and the strings they point to live
    // until JsonbValueToJsonb copies them.
    unsafe {
        // pushJsonbValue keeps pointers to the strings (into `value`, alive throughout) until
        // JsonbValueToJsonb copies them into the new datum.
        let mut state: *mut pg_sys::JsonbParseState = ptr::null_mut();
        let root = match value {
            Value::Object(_) | Value::Array(_) => push(&mut state, value),
            scalar => {
                let mut array: pg_sys::JsonbValue = std::mem::zeroed();
                array.type_ = jbvType::jbvArray;
                array.val.array.rawScalar = true;
                pg_sys::pushJsonbValue(&mut state, Token::WJB_BEGIN_ARRAY, &mut array);
                let mut elem = scalar_value(scalar);
                pg_sys::pushJsonbValue(&mut state, Token::WJB_ELEM, &mut elem);
                pg_sys::pushJsonbValue(&mut state, Token::WJB_END_ARRAY, ptr::null_mut())
            }
        };
        pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(root))
    }
}

/// Pushes a container (object or array) and everything in it; returns what
/// `pushJsonbValue` returns for its end.
///
/// # Safety
/// As for [`from_value`]; `value` must be an object or an array, and `state` the parse state of the jsonb being built
/// (null before its first push).
unsafe fn push(state: &mut *mut pg_sys::JsonbParseState, value: &Value) -> *mut pg_sys::JsonbValue {
    // SAFETY: as `from_value`'s caller guarantees; BEGIN and END are pushed in pairs, keys are jbvString values, and
    // the strings pushed live in `value` (or are palloc'd) until the jsonb is built.
    unsafe {
        match value {
            Value::Object(map) => {
                pg_sys::pushJsonbValue(state, Token::WJB_BEGIN_OBJECT, ptr::null_mut());
                for (key, item) in map {
                    let mut k = string_value(key);
                    pg_sys::pushJsonbValue(state, Token::WJB_KEY, &mut k);
                    push_item(state, item, Token::WJB_VALUE);
                }
                pg_sys::pushJsonbValue(state, Token::WJB_END_OBJECT, ptr::null_mut())
            }
            Value::Array(items) => {
                pg_sys::pushJsonbValue(state, Token::WJB_BEGIN_ARRAY, ptr::null_mut());
                for item in items {
                    push_item(state, item, Token::WJB_ELEM);
                }
                pg_sys::pushJsonbValue(state, Token::WJB_END_ARRAY, ptr::null_mut())
            }
            _ => unreachable!("push is called with containers only"),
        }
    }
}

/// Pushes a member of a container: a nested container whole, a scalar as `token` (an
/// object's value or an array's element).
///
/// # Safety
/// As for [`push`]; `token` must be WJB_VALUE right after a key, or WJB_ELEM inside an array.
unsafe fn push_item(state: &mut *mut pg_sys::JsonbParseState, item: &Value, token: pg_sys::JsonbIteratorToken::Type) {
    // SAFETY: as for `push`: a container is pushed whole, a scalar as an initialised value with the token its place
    // requires.
    unsafe {
        if item.is_object() || item.is_array() {
            push(state, item);
        } else {
            let mut v = scalar_value(item);
            pg_sys::pushJsonbValue(state, token, &mut v);
        }
    }
}

/// A jsonb string holding `s`, in the database encoding. Points into `s` when that is UTF-8.
///
/// # Safety
/// On the backend's main thread inside a transaction (converting pallocs and may raise an ERROR); the result may
/// point into `s`, which must outlive it.
unsafe fn string_value(s: &str) -> pg_sys::JsonbValue {
    if s.contains('\0') {
        SyncError::new(
            PgSqlErrorCode::ERRCODE_UNTRANSLATABLE_CHARACTER,
            "unsupported Unicode escape sequence: \\u0000 cannot be converted to text",
            "Remove NUL characters from the record's strings: PostgreSQL text cannot hold them.",
        )
        .raise()
    }
    let (ptr, len) = if utf8_database() {
        (s.as_ptr() as *mut std::ffi::c_char, s.len())
    } else {
        // SAFETY: `s` points to `s.len()` bytes of UTF-8; pg_any_to_server returns `s` itself or a NUL-terminated
        // palloc'd copy.
        let p = unsafe { pg_sys::pg_any_to_server(s.as_ptr().cast(), s.len() as i32, pg_sys::pg_enc::PG_UTF8 as i32) };
        let len = if std::ptr::eq(p, s.as_ptr().cast()) {
            s.len()
        } else {
            // SAFETY: `p` is not `s`, so it is the NUL-terminated copy pg_any_to_server made.
            unsafe { CStr::from_ptr(p) }.to_bytes().len()
        };
        (p, len)
    };
    // SAFETY: JsonbValue is a C struct of integers, bools and pointers, for which all zeros is a valid value.
    let mut v: pg_sys::JsonbValue = unsafe { std::mem::zeroed() };
    v.type_ = jbvType::jbvString;
    v.val.string = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 { len: len as i32, val: ptr };
    v
}

/// # Safety
/// As for [`string_value`]: on the backend's main thread inside a transaction; a string's result points into `value`.
unsafe fn scalar_value(value: &Value) -> pg_sys::JsonbValue {
    // SAFETY: JsonbValue is a C struct of integers, bools and pointers, for which all zeros is a valid value.
    let mut v: pg_sys::JsonbValue = unsafe { std::mem::zeroed() };
    match value {
        // SAFETY: this function's caller upholds string_value's requirements, which are the same as its own.
        Value::String(s) => return unsafe { string_value(s) },
        Value::Bool(b) => {
            v.type_ = jbvType::jbvBool;
            v.val.boolean = *b;
        }
        Value::Number(n) => {
            let text = CString::new(n.to_string()).expect("a JSON number has no NUL");
            // SAFETY: numeric_in gets its three arguments (a NUL-terminated string that outlives the call, no type
            // OID, typmod -1), called in a transaction as the caller guarantees.
            let numeric = unsafe {
                direct_function_call_as_datum(
                    pg_sys::numeric_in,
                    &[
                        Some(pg_sys::Datum::from(text.as_ptr())),
                        Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                        Some(pg_sys::Datum::from(-1i32)),
                    ],
                )
            }
            .expect("numeric_in returns a numeric");
            v.type_ = jbvType::jbvNumeric;
            v.val.numeric = numeric.cast_mut_ptr();
        }
        _ => v.type_ = jbvType::jbvNull,
    }
    v
}
