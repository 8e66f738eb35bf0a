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

pub fn init() {
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
