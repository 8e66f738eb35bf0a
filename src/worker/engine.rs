//! The worker's round: settle what came back from the network, then start what is due —
//! outbound batches (realtime links right after a commit, scheduled links every N seconds,
//! retries when their time comes) and inbound pulls. One link's failure (an unreachable
//! remote, a dropped table) is logged, recorded in its state, and does not hold up the others.
//!
//! Log lines come from the spans around the work (see `crate::log`): each round, each link in
//! it, each batch from its claim to its settlement (on the network too), each pull.

use super::error::WorkerError;
use crate::catalog::link::LinkRow;
use crate::error::{spi_opt, OrRaise};
use crate::logic::link_spec::{Direction, Schedule};
use crate::logic::reach::AllowList;
use crate::logic::status::Status;
use crate::outbound::plan::{Conventions, Sent};
use crate::outbound::{claim, send, settle};
use crate::pull::{self, fetch::Pulled};
use crate::settings;
use crate::spi::subxact::{self, SqlError};
use crate::transport::http::Client;
use crate::transport::Transport;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tracing::{debug, info, info_span, warn, Instrument, Span};

/// A finished network job.
pub enum Done {
    /// `span`: the batch's, entered again to settle it.
    Sent {
        link_id: i64,
        full: bool,
        sent: Vec<Sent>,
        span: Span,
    },
    Pulled {
        link_id: i64,
        result: Result<Pulled, String>,
        span: Span,
    },
}

/// What the worker remembers of a link between rounds.
#[derive(Default)]
struct Clock {
    /// Batches on the network (records of one batch are not in the next: at most one delivery
    /// per record is in flight, so order per record holds).
    sending: usize,
    pulling: bool,
    next_send: Option<Instant>,
    next_pull: Option<Instant>,
    /// After an error, the link rests until then.
    resting_until: Option<Instant>,
    /// The link's request permits (`concurrency`, shared by its batches on the network) and
    /// the setting they were made for.
    permits: Option<(usize, Arc<Semaphore>)>,
}

/// After an error outside a delivery (catalog, SQL), a link rests this long.
const REST: Duration = Duration::from_secs(5);
/// Shortest time between the starts of two rounds (see `run`).
const MIN_ROUND: Duration = Duration::from_millis(5);
/// Batches of one link on the network at once: while one travels, the next is prepared.
const BATCHES_IN_FLIGHT: usize = 2;

pub struct Engine {
    transport: Transport<Done>,
    /// Clients by timeout, response cap and `syncbridge.allowed_hosts` text.
    clients: HashMap<(u64, usize, String), Client>,
    clocks: HashMap<i64, Clock>,
    /// Run the next round at once (a full batch came back: more is probably waiting).
    again: bool,
    next_prune: Option<Instant>,
    /// Rounds and batches so far, which number their spans.
    rounds: u64,
    batches: u64,
}

impl Engine {
    pub fn new(transport: Transport<Done>) -> Self {
        Self {
            transport,
            clients: HashMap::new(),
            clocks: HashMap::new(),
            again: false,
            next_prune: None,
            rounds: 0,
            batches: 0,
        }
    }

    pub fn run(&mut self) {
        let mut installed = false;
        loop {
            let round = Instant::now();
            self.rounds += 1;
            let span = info_span!("round", n = self.rounds).entered();
            // What the HTTP threads logged since the last round.
            crate::log::drain();
            if !installed {
                installed = in_transaction(|| {
                    let found = spi_opt::<bool>("SELECT true FROM pg_extension WHERE extname = 'pg_syncbridge'", &[])
                        .ok()
                        .flatten()
                        .unwrap_or(false);
                    if found {
                        let n = spi_opt::<i64>("SELECT syncbridge._recover()", &[]).or_raise().unwrap_or(0);
                        if n > 0 {
                            info!("{n} deliveries cut off by a restart are due again");
                        }
                    }
                    found
                })
                .unwrap_or(false);
            }
            if installed {
                self.prune();
                self.collect();
                match in_transaction(|| self.dispatch()) {
                    // Recorded after the round's transaction, each in one of its own.
                    Ok(troubles) => troubles.into_iter().for_each(|(link, e)| self.trouble(link, &e)),
                    Err(e) => {
                        warn!("{e}");
                        installed = false;
                    }
                }
            }
            drop(span);
            let nap = Duration::from_millis(settings::NAPTIME_MS.get().max(10) as u64);
            let timeout = if std::mem::take(&mut self.again) { Duration::ZERO } else { self.until_due(nap) };
            // Commits may set the latch thousands of times a second; one round per
            // MIN_ROUND at most takes them in together instead of a round (a transaction)
            // for each, so a busy table does not cost the worker a core.
            if let Some(rest) = MIN_ROUND.checked_sub(round.elapsed()) {
                std::thread::sleep(rest);
            }
            if !BackgroundWorker::wait_latch(Some(timeout.max(Duration::from_millis(1)))) {
                break;
            }
            if BackgroundWorker::sighup_received() {
                // SAFETY: on the worker's main thread between transactions, after a SIGHUP, as PostgreSQL's own
                // processes reread the configuration.
                unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
                crate::log::set_level(settings::log_threshold());
                // A new retention applies at once.
                self.next_prune = None;
                // Lifecycle lines (start, stop, reload) are always written.
                log!(
                    "pg_syncbridge: settings reloaded (naptime {} ms, batch_size {}, log_level {})",
                    settings::NAPTIME_MS.get(),
                    settings::BATCH_SIZE.get(),
                    settings::log_threshold().name()
                );
            }
        }
    }

    /// Deletes events older than `syncbridge.events_retention`, about once a minute.
    fn prune(&mut self) {
        if self.next_prune.is_some_and(|t| t > Instant::now()) {
            return;
        }
        self.next_prune = Some(Instant::now() + Duration::from_secs(60));
        let minutes = settings::EVENTS_RETENTION_MIN.get();
        match in_transaction(|| {
            spi_opt::<i64>("SELECT syncbridge._prune_events(make_interval(mins => $1))", &[minutes.into()]).or_raise()
        }) {
            Ok(Some(n)) if n > 0 => info!("pruned {n} events older than {minutes} minutes"),
            Ok(_) => {}
            Err(e) => warn!("pruning events: {e}"),
        }
    }

    /// Time until the earliest scheduled send or pull, at most `nap`.
    fn until_due(&self, nap: Duration) -> Duration {
        let now = Instant::now();
        self.clocks
            .values()
            .flat_map(|c| [c.next_send, c.next_pull])
            .flatten()
            .map(|t| t.saturating_duration_since(now))
            .fold(nap, Duration::min)
    }

    /// Settles every finished job, each in its own transaction.
    fn collect(&mut self) {
        while let Some(done) = self.transport.try_recv() {
            let (link_id, outcome) = match done {
                Done::Sent { link_id, full, sent, span } => {
                    self.clock(link_id).sending -= 1;
                    self.again |= full;
                    let outcome = span.in_scope(|| in_transaction(|| settle_batch(link_id, sent)));
                    // Wake up for the soonest retry, however long the nap.
                    if let Ok(Ok(Some(after))) = &outcome {
                        let at = Instant::now() + *after;
                        let clock = self.clock(link_id);
                        clock.next_send = Some(clock.next_send.map_or(at, |t| t.min(at)));
                    }
                    (link_id, outcome.map(|r| r.map(|_| ())))
                }
                Done::Pulled { link_id, result, span } => {
                    self.clock(link_id).pulling = false;
                    (link_id, span.in_scope(|| in_transaction(|| apply_pull(link_id, result))))
                }
            };
            if let Err(e) = outcome.map_err(WorkerError::from).and_then(|r| r) {
                self.trouble(link_id, &e);
            }
        }
    }

    fn clock(&mut self, link_id: i64) -> &mut Clock {
        self.clocks.entry(link_id).or_default()
    }

    /// Starts what is due, in the caller's transaction (each link in a subtransaction).
    /// Returns the links that could not start, with why.
    fn dispatch(&mut self) -> Vec<(i64, WorkerError)> {
        let mut troubles = Vec::new();
        let links = LinkRow::load_all().or_raise();
        self.clocks.retain(|id, _| links.iter().any(|l| l.id == *id));
        let now = Instant::now();
        let batch = settings::BATCH_SIZE.get();
        for link in links.iter().filter(|l| !l.paused) {
            let clock = self.clocks.entry(link.id).or_default();
            if clock.resting_until.is_some_and(|t| t > now) {
                continue;
            }
            let Ok(direction) = Direction::parse(&link.direction) else { continue };
            let schedule = Schedule::parse(&link.schedule).unwrap_or(Schedule::Realtime);
            let every = match schedule {
                Schedule::Every(n) => Some(Duration::from_secs(u64::from(n))),
                Schedule::Realtime => None,
            };
            let send_due =
                direction.sends() && clock.sending < BATCHES_IN_FLIGHT && clock.next_send.is_none_or(|t| t <= now);
            let pull_due =
                !clock.pulling && direction.receives() && link.conf.pull && clock.next_pull.is_none_or(|t| t <= now);
            if !send_due && !pull_due {
                continue;
            }
            let _link = info_span!("link", name = link.name.as_str()).entered();
            // Without its auth secret a link sends and pulls nothing (and claims nothing).
            let secret = match subxact::run(|| secret(link)) {
                Ok(Ok(secret)) => secret,
                Ok(Err(e)) => {
                    troubles.push((link.id, e));
                    continue;
                }
                Err(e) => {
                    troubles.push((link.id, e.into()));
                    continue;
                }
            };
            if send_due {
                let limit = link.conf.batch_size.unwrap_or(batch as u64).min(100_000) as i32;
                match subxact::run(|| claim::claim(link, limit)) {
                    Ok(Ok(deliveries)) => {
                        let clock = self.clocks.get_mut(&link.id).expect("clock exists");
                        clock.next_send = every.map(|e| now + e);
                        if !deliveries.is_empty() {
                            clock.sending += 1;
                            let full = deliveries.len() as i32 >= limit;
                            let conv = Arc::new(Conventions::of(link, secret.clone()));
                            let permits = match &clock.permits {
                                Some((n, p)) if *n == conv.concurrency => p.clone(),
                                _ => {
                                    let p = Arc::new(Semaphore::new(conv.concurrency));
                                    clock.permits = Some((conv.concurrency, p.clone()));
                                    p
                                }
                            };
                            let client = self.client(conv.timeout_ms, conv.max_response_bytes);
                            let link_id = link.id;
                            self.batches += 1;
                            let span = info_span!("batch", seq = self.batches, records = deliveries.len());
                            let job = send::send(client, conv, permits, deliveries).instrument(span.clone());
                            self.transport.spawn(async move { Done::Sent { link_id, full, sent: job.await, span } });
                        }
                    }
                    Ok(Err(e)) => troubles.push((link.id, e.into())),
                    Err(e) => troubles.push((link.id, e.into())),
                }
            }
            if pull_due {
                let interval = every.unwrap_or(Duration::from_secs(link.conf.pull_interval.max(1)));
                match subxact::run(|| pull::cursor(link.id)) {
                    Ok(Ok(cursor)) => {
                        let clock = self.clocks.get_mut(&link.id).expect("clock exists");
                        clock.pulling = true;
                        clock.next_pull = Some(now + interval);
                        let conv = Conventions::of(link, secret.clone());
                        let spec = pull::spec(link, cursor.as_deref(), conv.headers.clone());
                        let client = self.client(conv.timeout_ms, conv.max_response_bytes);
                        let link_id = link.id;
                        let span = info_span!("pull");
                        let job = pull::fetch::fetch(client, spec).instrument(span.clone());
                        self.transport.spawn(async move { Done::Pulled { link_id, result: job.await, span } });
                    }
                    Ok(Err(e)) => troubles.push((link.id, e.into())),
                    Err(e) => troubles.push((link.id, e.into())),
                }
            }
        }
        troubles
    }

    /// A client for these limits that keeps to `syncbridge.allowed_hosts` as it is now (read
    /// here, on the main thread; after a reload the clients of the old list are dropped).
    fn client(&mut self, timeout_ms: u64, max_bytes: usize) -> Client {
        let hosts = settings::allowed_hosts();
        self.clients.retain(|(_, _, h), _| *h == hosts);
        self.clients
            .entry((timeout_ms, max_bytes, hosts.clone()))
            .or_insert_with(|| {
                let allowed = AllowList::parse(&hosts);
                Client::new(Duration::from_millis(timeout_ms), max_bytes, allowed).expect("the HTTP client builds")
            })
            .clone()
    }

    /// Logs a link's error, records it in its state and lets the link rest a while.
    fn trouble(&mut self, link_id: i64, error: &WorkerError) {
        self.clock(link_id).resting_until = Some(Instant::now() + REST);
        let message = error.to_string();
        let name = in_transaction(|| {
            Spi::run_with_args("SELECT syncbridge._link_failed($1, $2)", &[link_id.into(), message.as_str().into()])
                .ok();
            spi_opt::<String>("SELECT name FROM syncbridge._link WHERE id = $1", &[link_id.into()]).ok().flatten()
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| format!("#{link_id}"));
        info_span!("link", name = name.as_str()).in_scope(|| match error.sqlstate() {
            Some(code) => warn!("{message} (SQLSTATE {code})"),
            None => warn!("{message}"),
        });
    }
}

/// The value of the link's auth secret, if it names one. A missing secret is an error.
fn secret(link: &LinkRow) -> Result<Option<String>, WorkerError> {
    let Some(name) = link.conf.auth_secret.as_deref() else { return Ok(None) };
    match spi_opt::<String>("SELECT value FROM syncbridge._secret WHERE name = $1", &[name.into()]) {
        Ok(Some(v)) => Ok(Some(v)),
        _ => {
            Err(WorkerError::Link(format!("secret \"{name}\" is not set; SELECT syncbridge.set_secret('{name}', ...)")))
        }
    }
}

fn load_link(link_id: i64) -> Option<LinkRow> {
    LinkRow::load_all().or_raise().into_iter().find(|l| l.id == link_id)
}

/// Settles a batch; returns when its soonest retry is due.
fn settle_batch(link_id: i64, sent: Vec<Sent>) -> Result<Option<Duration>, WorkerError> {
    let result = subxact::run(|| match load_link(link_id) {
        Some(link) => {
            let r = settle::settle(&link, sent);
            let (delivered, failed) = (r.count(Status::Delivered), r.count(Status::Failed));
            if delivered > 0 {
                Spi::run_with_args("SELECT syncbridge._link_succeeded($1)", &[link_id.into()]).or_raise();
            } else if let Some(reason) = r.first_failure() {
                // Nothing got through: the link is failing, and link_status says why.
                Spi::run_with_args("SELECT syncbridge._link_failed($1, $2)", &[link_id.into(), reason.into()])
                    .or_raise();
            }
            let summary = format!("{delivered} of {} deliveries delivered, {failed} failed", r.len());
            if failed > 0 {
                info!("{summary}");
            } else {
                debug!("{summary}");
            }
            r.next_retry
        }
        None => None,
    });
    if let Err(e) = result {
        // Whatever was in flight is due again; its attempt was counted.
        let _ = subxact::run(|| {
            Spi::run_with_args(
                "UPDATE syncbridge._pending SET in_flight = false WHERE link_id = $1 AND in_flight",
                &[link_id.into()],
            )
            .or_raise()
        });
        return Err(e.into());
    }
    Ok(result?)
}

/// Applies what a pull fetched; a pull that stopped early (its error in `stopped`) applies the
/// pages it read and then reports why it stopped.
fn apply_pull(link_id: i64, result: Result<Pulled, String>) -> Result<(), WorkerError> {
    let pulled = result.map_err(WorkerError::Link)?;
    let stopped = pulled.stopped.clone();
    let pages = pulled.pages;
    subxact::run(|| match load_link(link_id) {
        Some(link) if !link.paused => pull::apply(&link, pulled)
            .map(|n| debug!("{n} records from {pages} pages applied"))
            .map_err(WorkerError::from),
        _ => Ok(()),
    })??;
    stopped.map_or(Ok(()), |e| Err(WorkerError::Link(e)))
}

/// Runs `f` in a transaction of its own; an ERROR inside rolls it back and comes back as text
/// instead of ending the worker.
fn in_transaction<R>(f: impl FnOnce() -> R) -> Result<R, SqlError> {
    let f = AssertUnwindSafe(f);
    let result = BackgroundWorker::transaction(AssertUnwindSafe(move || subxact::run(move || (f.0)())));
    // A worker never returns to a client loop, which is where backends report their table
    // statistics; without them autovacuum would not see the outbox and _pending churn.
    // SAFETY: on the worker's main thread after the transaction has ended: pgstat_report_stat must run outside one.
    unsafe { pg_sys::pgstat_report_stat(false) };
    result
}
