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
use crate::listen::server::{Reply, Request};
use crate::listen::{self, Listener};
use crate::logic::delivery::backoff;
use crate::logic::link_settings::BeforeUpdate;
use crate::logic::link_spec::{Direction, Schedule};
use crate::logic::outage;
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
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
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

/// A network job prepared in a round, started only after the round's transaction commits: what
/// it sends was claimed (a create marked as possibly sent) in that transaction, and a crash
/// before the commit would roll the claim back while the request was already out.
struct Prepared {
    link_id: i64,
    /// A batch (`true`) or a pull.
    batch: bool,
    job: Pin<Box<dyn Future<Output = Done> + Send>>,
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
    /// After an error outside a delivery or a pull, the link rests until then.
    resting_until: Option<Instant>,
    /// While the link is unavailable (its remote answered none of its requests): the probes
    /// that failed so far. One record at a time goes out then, at growing intervals.
    outage: Option<u32>,
    /// The outage outlasted `outage_budget`: whole batches go out again, and what fails for
    /// the outage is dead-lettered.
    past_budget: bool,
    /// Pulls that failed in a row: the pull (only) waits longer after each.
    pull_failures: u32,
    /// A pull finished since the link's last claim (`before_update` = `pull`: sends wait for one).
    pulled: bool,
    /// A send is waiting for the pull on its way: the round after it comes at once.
    send_waits: bool,
    /// The link's request permits (`concurrency`, shared by its batches on the network) and
    /// the setting they were made for.
    permits: Option<(usize, Arc<Semaphore>)>,
}

/// After an error outside a delivery or a pull (catalog, SQL), a link rests this long.
const REST: Duration = Duration::from_secs(5);
/// The longest wait of a pull after failed pulls (besides its interval).
const PULL_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Shortest time between the starts of two rounds (see `run`).
const MIN_ROUND: Duration = Duration::from_millis(5);
/// Batches of one link on the network at once: while one travels, the next is prepared.
const BATCHES_IN_FLIGHT: usize = 2;

pub struct Engine {
    transport: Transport<Done>,
    /// The webhook listener's requests, when `syncbridge.listen` is set.
    listener: Option<Listener>,
    /// Clients by timeout, response cap and `syncbridge.allowed_hosts` text.
    clients: HashMap<(u64, usize, String), Client>,
    clocks: HashMap<i64, Clock>,
    /// The round's network jobs, until its transaction has committed.
    prepared: Vec<Prepared>,
    /// Run the next round at once (a full batch came back: more is probably waiting).
    again: bool,
    next_prune: Option<Instant>,
    /// Rounds and batches so far, which number their spans.
    rounds: u64,
    batches: u64,
}

impl Engine {
    pub fn new(transport: Transport<Done>, listener: Option<Listener>) -> Self {
        Self {
            transport,
            listener,
            clients: HashMap::new(),
            clocks: HashMap::new(),
            prepared: Vec::new(),
            again: false,
            next_prune: None,
            rounds: 0,
            batches: 0,
        }
    }

    pub fn run(&mut self) {
        let mut installed = false;
        set_lock_timeout();
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
            self.serve(installed);
            if installed {
                self.prune();
                self.collect();
                let dispatched = in_transaction(|| self.dispatch());
                self.start_prepared(dispatched.is_ok());
                match dispatched {
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
                set_lock_timeout();
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

    /// Answers the webhook listener's requests, each in a transaction of its own; the reply
    /// goes out after the commit (or the rollback), so a 2xx means applied.
    fn serve(&mut self, installed: bool) {
        let Some(listener) = &self.listener else { return };
        let requests: Vec<Request> = listener.rx.try_iter().collect();
        for req in requests {
            let outcome = info_span!("webhook").in_scope(|| in_transaction(|| listen::answer(&req, installed)));
            let reply = match outcome {
                Ok((reply, effect)) => {
                    if let Some(link_id) = effect.nudge {
                        self.clock(link_id).next_pull = Some(Instant::now());
                        self.again = true;
                    }
                    reply
                }
                Err(e) => {
                    // The message may quote the records' values: only at debug level.
                    let code = e.sqlstate();
                    warn!("a webhook request was rolled back (SQLSTATE {code})");
                    debug!("webhook request rolled back: {e}");
                    let status =
                        if code.starts_with("40") || code.starts_with("55") || code == "57014" { 503 } else { 500 };
                    Reply::error(status, &format!("nothing was applied (SQLSTATE {code})"))
                }
            };
            let _ = req.reply.send(reply);
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
        let keep = crate::listen::DELIVERY_ID_WINDOW_MIN;
        if let Err(e) = in_transaction(|| {
            Spi::run_with_args(
                "DELETE FROM syncbridge._webhook_delivery WHERE at < now() - make_interval(mins => $1)",
                &[keep.into()],
            )
            .or_raise()
        }) {
            warn!("pruning webhook deliveries: {e}");
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
                    if let Ok(Ok(settled)) = &outcome {
                        self.health(link_id, settled);
                    }
                    (link_id, outcome.map(|r| r.map(|_| ())))
                }
                Done::Pulled { link_id, result, span } => {
                    let clock = self.clock(link_id);
                    clock.pulling = false;
                    // Sends that waited for it go now, whatever it brought: a failed pull
                    // holds them no longer (an update still carries only what changed).
                    clock.pulled = true;
                    self.again |= std::mem::take(&mut clock.send_waits);
                    let outcome = span.in_scope(|| in_transaction(|| apply_pull(link_id, result)));
                    // A failed pull makes the next pull wait (longer each time), not the sends.
                    match outcome.map_err(WorkerError::from).and_then(|r| r) {
                        Ok(()) => self.clock(link_id).pull_failures = 0,
                        Err(e) => {
                            let clock = self.clock(link_id);
                            clock.pull_failures += 1;
                            let at = Instant::now() + backoff(clock.pull_failures, 0.5).min(PULL_BACKOFF_MAX);
                            clock.next_pull = Some(clock.next_pull.map_or(at, |t| t.max(at)));
                            self.report(link_id, &e);
                        }
                    }
                    continue;
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

    /// What a settled batch says of the link: the remote answered (an outage, if any, is
    /// over), answered nothing (the link is unavailable: the next probe waits longer), or
    /// neither; and when the soonest retry is due.
    fn health(&mut self, link_id: i64, settled: &Settled) {
        let now = Instant::now();
        let clock = self.clocks.entry(link_id).or_default();
        if settled.reached {
            clock.past_budget = false;
            if clock.outage.take().is_some() {
                info!("the remote answers again: the outage is over");
                // Everything held back is due now.
                clock.next_send = None;
                self.again = true;
                return;
            }
        } else if settled.spared > 0 || settled.past_budget > 0 {
            let probes = clock.outage.map_or(1, |n| n + 1);
            clock.outage = Some(probes);
            clock.past_budget = settled.past_budget > 0;
            let jitter = (link_id as u64 ^ u64::from(probes)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
            let wait = outage::probe_delay(probes, jitter as f64 / (1u64 << 53) as f64, settled.probe_max);
            clock.next_send = Some(now + wait);
            return;
        }
        // Wake up for the soonest retry, however long the nap.
        if let Some(after) = settled.next_retry {
            let at = now + after;
            clock.next_send = Some(clock.next_send.map_or(at, |t| t.min(at)));
        }
    }

    /// Starts what is due, in the caller's transaction (each link in a subtransaction).
    /// Returns the links that could not start, with why.
    /// Starts the round's network jobs once its transaction has committed; after a rollback
    /// nothing was claimed, and they are dropped unstarted.
    fn start_prepared(&mut self, committed: bool) {
        for p in std::mem::take(&mut self.prepared) {
            if committed {
                self.transport.spawn(p.job);
            } else if let Some(clock) = self.clocks.get_mut(&p.link_id) {
                if p.batch {
                    clock.sending -= 1;
                } else {
                    clock.pulling = false;
                }
            }
        }
    }

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
            // An unavailable link sends one probe at a time (whole batches past its budget).
            let probing = clock.outage.is_some() && !clock.past_budget;
            let in_flight = if probing { 1 } else { BATCHES_IN_FLIGHT };
            let mut send_due =
                direction.sends() && clock.sending < in_flight && clock.next_send.is_none_or(|t| t <= now);
            // `before_update` = `pull`: a round with something to send pulls first, and sends
            // once that pull is applied, so remote edits are settled before an update goes.
            let mut pull_first = false;
            if send_due
                && !clock.pulled
                && link.conf.before_update(direction.receives()) == BeforeUpdate::Pull
                && has_work(link.id)
            {
                send_due = false;
                pull_first = !clock.pulling;
                clock.send_waits = true;
            }
            // A link's first pull comes a pull interval after its creation, as later pulls
            // come after the one before: a link is often completed (its auth_secret, its
            // settings) in statements after create_link.
            if clock.next_pull.is_none() && direction.receives() && link.conf.pull {
                let interval = every.unwrap_or(Duration::from_secs(link.conf.pull_interval.max(1)));
                let wait = spi_opt::<f64>(
                    "SELECT extract(epoch FROM created_at - now())::float8 + $2 FROM syncbridge._link WHERE id = $1",
                    &[link.id.into(), interval.as_secs_f64().into()],
                )
                .ok()
                .flatten()
                .unwrap_or(0.0);
                clock.next_pull = Some(now + Duration::from_secs_f64(wait.clamp(0.0, interval.as_secs_f64())));
            }
            let pull_due = pull_first
                || (!clock.pulling
                    && direction.receives()
                    && link.conf.pull
                    && clock.next_pull.is_none_or(|t| t <= now));
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
                let limit = if probing { 1 } else { link.conf.batch_size.unwrap_or(batch as u64).min(100_000) as i32 };
                match subxact::run(|| claim::claim(link, limit)) {
                    Ok(Ok(deliveries)) => {
                        let clock = self.clocks.get_mut(&link.id).expect("clock exists");
                        clock.pulled = false;
                        if !probing || deliveries.is_empty() {
                            clock.next_send = every.map(|e| now + e);
                        }
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
                            let job = Box::pin(async move { Done::Sent { link_id, full, sent: job.await, span } });
                            self.prepared.push(Prepared { link_id, batch: true, job });
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
                        let job = Box::pin(async move { Done::Pulled { link_id, result: job.await, span } });
                        self.prepared.push(Prepared { link_id, batch: false, job });
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
        self.report(link_id, error);
    }

    /// Logs a link's error and records it in its state.
    fn report(&mut self, link_id: i64, error: &WorkerError) {
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

/// Something of the link is due to be sent: outbox entries, or pending records due now.
fn has_work(link_id: i64) -> bool {
    spi_opt::<bool>(
        "SELECT EXISTS (SELECT FROM syncbridge.outbox o WHERE o.link_id = $1) \
             OR EXISTS (SELECT FROM syncbridge._pending p WHERE p.link_id = $1 AND NOT p.failed \
                        AND NOT p.in_flight AND p.next_attempt <= now())",
        &[link_id.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(true)
}

fn load_link(link_id: i64) -> Option<LinkRow> {
    LinkRow::load_all().or_raise().into_iter().find(|l| l.id == link_id)
}

/// What a settled batch says of its link.
#[derive(Debug, Default)]
struct Settled {
    /// The soonest retry, if any.
    next_retry: Option<Duration>,
    /// Some answer showed the remote is there.
    reached: bool,
    /// Failures spared for an outage, and dead-lettered past `outage_budget`.
    spared: usize,
    past_budget: usize,
    /// The link's `outage_probe_max`.
    probe_max: Duration,
}

/// Settles a batch; says what it showed of the link.
fn settle_batch(link_id: i64, sent: Vec<Sent>) -> Result<Settled, WorkerError> {
    let result = subxact::run(|| match load_link(link_id) {
        Some(link) => {
            // Records that reads before their updates found changed on the remote are applied
            // first, settled by the link's contention policy like pulled records.
            let seen: Vec<Value> = sent.iter().filter_map(|s| s.seen.clone().map(Value::Object)).collect();
            if !seen.is_empty() {
                crate::inbound::apply_records(&link.name, Value::Array(seen)).or_raise();
            }
            let r = settle::settle(&link, sent);
            let (delivered, failed) = (r.count(Status::Delivered), r.count(Status::Failed));
            if delivered > 0 {
                Spi::run_with_args("SELECT syncbridge._link_succeeded($1)", &[link_id.into()]).or_raise();
            } else if r.reached {
                // A refusal (4xx) is an answer too: the remote is there.
                Spi::run_with_args("SELECT syncbridge._link_available($1)", &[link_id.into()]).or_raise();
            }
            if r.reached || delivered > 0 {
                if delivered == 0 {
                    if let Some(reason) = r.first_failure() {
                        Spi::run_with_args("SELECT syncbridge._link_failed($1, $2)", &[link_id.into(), reason.into()])
                            .or_raise();
                    }
                }
            } else if let Some(reason) = r.first_spared() {
                // Nothing reached the remote: an outage of the link, not of its records.
                Spi::run_with_args(
                    "SELECT syncbridge._link_unavailable($1, $2)",
                    &[link_id.into(), format!("remote unavailable: {reason}").into()],
                )
                .or_raise();
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
            Settled {
                next_retry: r.next_retry,
                reached: r.reached,
                spared: r.spared,
                past_budget: r.past_budget,
                probe_max: Duration::from_secs(link.conf.outage_probe_max),
            }
        }
        None => Settled::default(),
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

/// Sets `lock_timeout` for the worker's session from `syncbridge.lock_timeout`: a statement
/// that waits longer for a lock (a user's transaction holding a row the worker must write)
/// fails with SQLSTATE 55P03, and the work is tried again later instead of stalling every link.
fn set_lock_timeout() {
    let ms = settings::LOCK_TIMEOUT_MS.get().max(0);
    if let Err(e) = in_transaction(|| {
        Spi::run_with_args("SELECT set_config('lock_timeout', $1, false)", &[format!("{ms}ms").into()]).or_raise()
    }) {
        warn!("setting lock_timeout: {e}");
    }
}

extern "C-unwind" {
    // utils/timeout.h; STATEMENT_TIMEOUT is 3 in its TimeoutId. PostgreSQL arms the statement
    // timeout only for a client's statements, so the worker arms it around each step.
    fn enable_timeout_after(id: u32, delay_ms: i32);
    fn disable_timeout(id: u32, keep_indicator: bool);
}
const STATEMENT_TIMEOUT: u32 = 3;

/// Runs `f` in a transaction of its own; an ERROR inside rolls it back and comes back as text
/// instead of ending the worker. The transaction is cancelled (SQLSTATE 57014) when it runs
/// longer than `syncbridge.statement_timeout`.
fn in_transaction<R>(f: impl FnOnce() -> R) -> Result<R, SqlError> {
    let f = AssertUnwindSafe(f);
    let limit = settings::STATEMENT_TIMEOUT_MS.get();
    if limit > 0 {
        // SAFETY: the backend's main thread; STATEMENT_TIMEOUT was registered by InitPostgres
        // for every backend, and its handler cancels the running query like a client's.
        unsafe { enable_timeout_after(STATEMENT_TIMEOUT, limit) };
    }
    let result = BackgroundWorker::transaction(AssertUnwindSafe(move || subxact::run(move || (f.0)())));
    if limit > 0 {
        // SAFETY: as above; disabling a timeout that already fired is allowed.
        unsafe { disable_timeout(STATEMENT_TIMEOUT, false) };
    }
    // A worker never returns to a client loop, which is where backends report their table
    // statistics; without them autovacuum would not see the outbox and _pending churn.
    // SAFETY: on the worker's main thread after the transaction has ended: pgstat_report_stat must run outside one.
    unsafe { pg_sys::pgstat_report_stat(false) };
    result
}
