//! Shared SPI infrastructure, below every feature room: subtransactions that turn an ERROR
//! into a value (`subxact`), statements prepared once per session (`plans`), jsonb read and
//! written in its binary form (`jsonb`), the database encoding (`encoding`) and settings for
//! the length of a call (`guc`).

pub mod encoding;
pub mod guc;
pub mod jsonb;
pub mod plans;
pub mod subxact;
