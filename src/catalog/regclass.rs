//! A `regclass` argument taken as the OID it is, without opening the relation: pgrx's
//! `PgRelation` opens it while reading the argument, so an OID of no table failed there with
//! an internal error (XX000) before `create_link` could say what was wrong (42P01).

use pgrx::pg_sys;
use pgrx::{FromDatum, IntoDatum};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regclass(pub pg_sys::Oid);

impl FromDatum for Regclass {
    /// # Safety
    /// As [`FromDatum`] requires: a non-null `datum` is a regclass, an OID by value.
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _typoid: pg_sys::Oid) -> Option<Self> {
        // SAFETY: a regclass datum is an OID by value.
        unsafe { pg_sys::Oid::from_datum(datum, is_null) }.map(Regclass)
    }
}

impl IntoDatum for Regclass {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(pg_sys::Datum::from(self.0))
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::REGCLASSOID
    }
}

pgrx::impl_sql_translatable!(Regclass, "regclass");

// SAFETY: the argument's datum is a regclass, an OID by value, which `FromDatum` reads.
unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for Regclass {
    /// # Safety
    /// As [`pgrx::callconv::ArgAbi`] requires: the argument is a non-null regclass.
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: the argument is a regclass, as the caller guarantees (ArgAbi's contract); a null one comes
        // back as None, not read.
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}
