//! Shared SPI infrastructure, below every feature room: subtransactions that turn an ERROR
//! into a value (`subxact`) and statements prepared once per session (`plans`).

pub mod plans;
pub mod subxact;
