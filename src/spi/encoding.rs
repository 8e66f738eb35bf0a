//! The database encoding, for the readers of text that must convert when it is not UTF-8.

use pgrx::pg_sys;

/// Whether the database encoding is UTF-8 (then stored text is taken as it is).
pub fn utf8_database() -> bool {
    thread_local! {
        // SAFETY: reads the backend's database encoding, fixed once it has connected to its database; callers read
        // stored text, so they are connected.
        static UTF8: bool = unsafe { pg_sys::GetDatabaseEncoding() } == pg_sys::pg_enc::PG_UTF8 as i32;
    }
    UTF8.with(|u| *u)
}
