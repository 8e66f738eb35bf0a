//! Shared SPI infrastructure, below every feature room: subtransactions that turn an ERROR
//! into a value (`subxact`), statements prepared once per session (`plans`), jsonb read and
//! written in its binary form (`jsonb`) and the database encoding (`encoding`).

pub mod encoding;
pub mod jsonb;
pub mod plans;
pub mod subxact;
