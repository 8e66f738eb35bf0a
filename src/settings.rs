//! Every `syncbridge.*` setting except the origin flag (see `origin`), in one place.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// Database(s) the background worker serves, comma-separated.
pub static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));

pub fn init() {
    GucRegistry::define_string_guc(
        c"syncbridge.database",
        c"Database(s) whose links the pg_syncbridge worker serves, comma-separated.",
        c"The extension must be created in each of them. Takes effect at server start.",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}
