//! pg_syncbridge: keeps a PostgreSQL table and a remote JSON collection in sync both ways.
use pgrx::prelude::*;

pub mod logic;

::pgrx::pg_module_magic!();

#[pg_extern]
fn hello() -> &'static str {
    "hi"
}
