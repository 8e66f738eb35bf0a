//! Outbound delivery, in three steps with the network in the middle and no transaction open
//! across it:
//!
//! 1. [`claim`] (a transaction on the worker's main thread): outbox entries become per-record
//!    `_pending` rows, due records are marked in flight, each is read in its current state and
//!    checked against the loop guards, and what must travel becomes a [`plan::Delivery`].
//! 2. [`send`] (on the transport's runtime): the deliveries go out, one request per record or
//!    one batch request, and each gets an answer.
//! 3. [`settle`] (a transaction again): answers are judged (delivered, retry later, failed),
//!    new remote ids are written back under the link's origin flag, and state and events are
//!    recorded.

pub mod claim;
pub mod plan;
pub mod send;
pub mod settle;
