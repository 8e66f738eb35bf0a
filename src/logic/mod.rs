//! Pure decision logic: no pgrx, no SPI, no I/O. Everyone calls `logic`; `logic` calls no one.
//! (The "core" of the design; named `logic` so it cannot shadow Rust's `core` crate in macros.)
//!
//! Everything here is tested with plain `#[test]`s (`cargo test --lib logic::`).

pub mod canonical;
pub mod contention;
pub mod decide;
pub mod delivery;
pub mod fingerprint;
pub mod guards;
pub mod inbound;
pub mod inbound_retry;
pub mod link_settings;
pub mod link_spec;
pub mod lookup;
pub mod mapping;
pub mod outage;
pub mod reach;
pub mod status;
pub mod webhook;
