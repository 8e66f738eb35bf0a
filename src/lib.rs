//! pg_syncbridge: keeps a PostgreSQL table and a remote JSON collection in sync both ways,
//! without loops, duplicates or lost edits.
//!
//! Modules follow the data path: `catalog` (link definitions) → `capture` (triggers that
//! write the outbox) → … ; `logic` holds the pure decisions everyone uses; `origin` is the
//! transaction-scoped flag that tells link writes from user edits.

pub mod capture;
pub mod catalog;
pub mod error;
pub mod inbound;
pub mod listen;
pub mod log;
pub mod logic;
pub mod observe;
pub mod origin;
pub mod outbound;
pub mod outbox;
mod pg_tests;
pub mod pull;
pub mod settings;
pub mod spi;
pub mod table;
pub mod transport;
pub mod worker;

::pgrx::pg_module_magic!(name, version);

pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
pgrx::extension_sql_file!("../sql/capture.sql", name = "capture", requires = ["schema"]);
pgrx::extension_sql_file!("../sql/inbound.sql", name = "inbound", requires = ["schema"]);
pgrx::extension_sql_file!("../sql/outbound.sql", name = "outbound", requires = ["inbound"]);
pgrx::extension_sql_file!("../sql/webhook.sql", name = "webhook", requires = ["schema"]);
pgrx::extension_sql_file!("../sql/status.sql", name = "status", requires = ["outbound", "capture"]);
pgrx::extension_sql_file!("../sql/views.sql", name = "views", finalize);

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::init();
    origin::init();
    capture::init();
    outbox::init();
    worker::init();
    // SAFETY: in _PG_init on the loading process's only thread, after the syncbridge settings are defined; the prefix
    // is a static NUL-terminated string.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"syncbridge".as_ptr()) };
}

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_syncbridge'"]
    }
}
