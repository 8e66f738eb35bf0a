//! Every `syncbridge.*` setting except the origin flag (see `origin`), in one place.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// Database(s) the background worker serves, comma-separated.
pub static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));
/// Longest sleep of an idle worker (ms): scheduled links, retries and pulls are checked at
/// least this often; realtime links are woken at commit.
pub static NAPTIME_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// Records claimed per link and round.
pub static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(500);

/// How long sync events are kept (minutes); the worker prunes older ones.
pub static EVENTS_RETENTION_MIN: GucSetting<i32> = GucSetting::<i32>::new(7 * 24 * 60);
/// The worker's own log lines: `debug` (every batch), `log` (summaries), `warning` (problems
/// only). Each line names the link.
pub static LOG_LEVEL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"warning"));

/// Longest wait of a worker statement for a lock (ms); 0 waits forever.
pub static LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// Longest run of one worker step (a claim, a settlement, a pull's apply; ms); 0: no limit.
pub static STATEMENT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);

/// Hosts links may point at (see `logic::reach`): names, `*.domain` wildcards, addresses and
/// CIDR ranges, comma-separated; empty allows any host.
pub static ALLOWED_HOSTS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The webhook listener's address (`host:port`); the worker of the n-th database listens on
/// port + n − 1. Empty: no listener.
pub static LISTEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// Name of the secret that `/metrics` and `/health` want as a bearer token; empty: open.
pub static LISTEN_TOKEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// Largest request body the listener reads (kB).
pub static LISTEN_MAX_BODY_KB: GucSetting<i32> = GucSetting::<i32>::new(8192);
/// Requests the listener holds at once (being read or waiting to be applied); more get 503.
pub static LISTEN_MAX_REQUESTS: GucSetting<i32> = GucSetting::<i32>::new(64);
/// Longest time the listener waits for a request's headers, and again for its body (ms).
pub static LISTEN_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
/// Most records one push may carry.
pub static LISTEN_MAX_RECORDS: GucSetting<i32> = GucSetting::<i32>::new(1000);

pub fn init() {
    GucRegistry::define_string_guc(
        c"syncbridge.listen",
        c"Address (host:port) of the pg_syncbridge webhook listener; empty: none.",
        c"The worker of the n-th database of syncbridge.database listens on this port + n - 1. Takes effect at server start.",
        &LISTEN,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"syncbridge.listen_token",
        c"Name of the secret (set_secret) that /metrics and /health of the listener want as a bearer token.",
        c"Empty: /metrics and /health are open to whoever reaches the listener.",
        &LISTEN_TOKEN,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"syncbridge.listen_max_body",
        c"Largest request body the webhook listener reads.",
        c"Larger requests get 413. Takes effect at server start.",
        &LISTEN_MAX_BODY_KB,
        1,
        1024 * 1024,
        GucContext::Postmaster,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"syncbridge.listen_max_requests",
        c"Requests the webhook listener of a worker holds at once.",
        c"More get 503 with Retry-After. Takes effect at server start.",
        &LISTEN_MAX_REQUESTS,
        1,
        10_000,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"syncbridge.listen_timeout",
        c"Longest time the webhook listener waits for a request's headers, and for its body.",
        c"Slower clients are cut off. Takes effect at server start.",
        &LISTEN_TIMEOUT_MS,
        100,
        600_000,
        GucContext::Postmaster,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"syncbridge.listen_max_records",
        c"Most records one push to the webhook listener may carry.",
        c"Larger pushes get 413 and nothing of them is applied.",
        &LISTEN_MAX_RECORDS,
        1,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"syncbridge.database",
        c"Database(s) whose links the pg_syncbridge worker serves, comma-separated.",
        c"The extension must be created in each of them. Takes effect at server start.",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"syncbridge.naptime",
        c"Longest time the pg_syncbridge worker sleeps between rounds.",
        c"Realtime links are woken at commit; scheduled links, retries and pulls are checked at least this often.",
        &NAPTIME_MS,
        10,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"syncbridge.batch_size",
        c"Records a worker claims per link and round.",
        c"A link's own batch_size setting takes precedence.",
        &BATCH_SIZE,
        1,
        100_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"syncbridge.events_retention",
        c"How long sync events are kept.",
        c"The worker deletes older rows of syncbridge.events about once a minute; counters in metrics() are kept.",
        &EVENTS_RETENTION_MIN,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MIN,
    );
    GucRegistry::define_int_guc(
        c"syncbridge.lock_timeout",
        c"Longest time a statement of the pg_syncbridge worker waits for a lock.",
        c"A record or pull that waits longer (a user's transaction holds a row the worker must write) is tried again later; other links go on. 0 waits forever.",
        &LOCK_TIMEOUT_MS,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"syncbridge.statement_timeout",
        c"Longest time one step of the pg_syncbridge worker (a claim, a settlement, a pull's apply) may run.",
        c"A longer step is rolled back and tried again later. 0: no limit.",
        &STATEMENT_TIMEOUT_MS,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"syncbridge.log_level",
        c"What the pg_syncbridge worker writes to the server log: debug, log or warning.",
        c"debug: every batch; log: start, stop, reloads and summaries; warning: problems only. Each line names its link.",
        &LOG_LEVEL,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"syncbridge.allowed_hosts",
        c"Hosts that links may send to and pull from; empty allows any.",
        c"Comma-separated host names, *.domain wildcards, IP addresses and CIDR ranges. Checked by create_link and alter_link, \
and by the worker on every request, redirect and resolved address. A value that does not parse stops all traffic.",
        &ALLOWED_HOSTS,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// `syncbridge.allowed_hosts` as written ("" when unset).
pub fn allowed_hosts() -> String {
    ALLOWED_HOSTS.get().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn text(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().map(|s| s.to_string_lossy().trim().to_owned()).filter(|s| !s.is_empty())
}

/// `syncbridge.listen`, when set.
pub fn listen() -> Option<String> {
    text(&LISTEN)
}

/// `syncbridge.listen_token`, when set.
pub fn listen_token() -> Option<String> {
    text(&LISTEN_TOKEN)
}

/// The worker's log threshold.
pub fn log_threshold() -> crate::log::Level {
    crate::log::Level::parse(&LOG_LEVEL.get().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
}

/// The databases named in `syncbridge.database`.
pub fn databases() -> Vec<String> {
    let raw = DATABASE.get().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut dbs: Vec<String> = raw.split(',').map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect();
    dbs.dedup();
    dbs
}
