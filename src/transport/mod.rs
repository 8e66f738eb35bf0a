//! HTTP transport: a tokio runtime on its own threads (all signals blocked, so PostgreSQL's
//! signal handlers keep running on the main thread only) and a reqwest client over rustls.
//! Nothing here touches PostgreSQL: the worker hands in futures and collects their results on
//! the main thread, where all SPI happens. Its log lines (`tracing` events in a `request`
//! span) are queued by `crate::log` and written by the main thread.

mod dns;
pub mod http;
mod redirect;
mod runtime;
pub mod scrub;
#[cfg(test)]
pub(crate) mod testing;

pub use runtime::Transport;
