//! A remote outage is a state of the link, not a failure of each record. These decisions
//! tell the two apart after a batch, and say what becomes of a record whose delivery got no
//! usable answer (a connection error, a timeout, 408, 429, 5xx — a "transient" failure).
//!
//! * The remote **answered** in this batch (any 2xx or 4xx): it is up, and a transient
//!   failure beside those answers is the record's own: it counts against `max_attempts`.
//! * The link succeeded since the record's previous failure, and the record fails again:
//!   its own repeated failure, counted too.
//! * Otherwise nothing tells the record from the remote: the failure is **spared** (not
//!   counted) and the link is unavailable. It then sends one record at a time (a probe),
//!   at growing intervals up to `outage_probe_max`; the first answer ends the outage and
//!   everything queued flows.
//! * An outage longer than `outage_budget` seconds stops sparing: each record that then fails
//!   for it is dead-lettered (`retry_failed` queues it again).

use super::delivery::{backoff, Answer};
use std::time::Duration;

/// Whether an answer shows that the remote is there (it answered with a status that is not
/// "try again later").
pub fn reached(answer: &Answer) -> bool {
    answer.status.is_some_and(|s| !matches!(s, 408 | 429 | 500..=599))
}

/// What is known about one record's transient failure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failure {
    /// This attempt, counting every try (1 for the first).
    pub attempt: u32,
    /// Earlier attempts spared for an outage.
    pub spared: u32,
    /// Another answer of the same batch reached the remote.
    pub batch_reached: bool,
    /// The link succeeded after this record's previous failure (or in the same batch).
    pub link_ok_since: bool,
    /// How long the link has been unavailable, if it is.
    pub outage: Option<Duration>,
}

/// The link's limits on failures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_attempts: u32,
    pub budget: Duration,
    pub probe_max: Duration,
}

/// What becomes of a record after a transient failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Try again after `after`; `spared`: the attempt is not counted (an outage).
    Retry { after: Duration, spared: bool },
    /// Dead-lettered, with why.
    GiveUp { reason: String },
}

/// Decides a record's fate after a transient failure whose verdict asked to retry after
/// `after` (its own backoff, or the remote's Retry-After).
pub fn fate(f: Failure, limits: Limits, after: Duration, reason: &str) -> Fate {
    if let Some(out) = f.outage.filter(|o| *o > limits.budget && !f.batch_reached) {
        return Fate::GiveUp {
            reason: format!(
                "the remote has been unavailable for {} s, longer than outage_budget ({} s): {reason}",
                out.as_secs(),
                limits.budget.as_secs()
            ),
        };
    }
    let counted = f.batch_reached || f.link_ok_since;
    if counted {
        let own = f.attempt.saturating_sub(f.spared);
        if own >= limits.max_attempts {
            return Fate::GiveUp { reason: format!("gave up after {own} attempts: {reason}") };
        }
        return Fate::Retry { after, spared: false };
    }
    Fate::Retry { after: after.min(limits.probe_max), spared: true }
}

/// How long an unavailable link waits before its next probe: doubling with each failed probe
/// (`probes`, 1 for the first), jittered, at most `probe_max`.
pub fn probe_delay(probes: u32, jitter: f64, probe_max: Duration) -> Duration {
    backoff(probes, jitter).min(probe_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits =
        Limits { max_attempts: 3, budget: Duration::from_secs(3600), probe_max: Duration::from_secs(30) };

    fn failure(attempt: u32, spared: u32) -> Failure {
        Failure { attempt, spared, batch_reached: false, link_ok_since: false, outage: None }
    }

    #[test]
    fn only_answers_that_are_not_try_again_show_the_remote_is_up() {
        let a = |status| Answer { status, ..Default::default() };
        assert!(reached(&a(Some(200))) && reached(&a(Some(422))) && reached(&a(Some(401))));
        assert!(!reached(&a(Some(500))) && !reached(&a(Some(503))) && !reached(&a(Some(429))));
        assert!(!reached(&a(Some(408))) && !reached(&a(None)));
    }

    #[test]
    fn failures_with_no_answer_anywhere_are_spared_however_many() {
        let after = Duration::from_secs(100);
        for attempt in 1..50 {
            assert_eq!(
                fate(failure(attempt, attempt - 1), LIMITS, after, "x"),
                Fate::Retry { after: LIMITS.probe_max, spared: true }
            );
        }
    }

    #[test]
    fn a_records_own_failure_counts_while_others_get_through() {
        let beside = Failure { batch_reached: true, ..failure(1, 0) };
        assert_eq!(
            fate(beside, LIMITS, Duration::from_secs(1), "x"),
            Fate::Retry { after: Duration::from_secs(1), spared: false }
        );
        // Three attempts, one of them spared in an outage: two counted.
        let again = Failure { link_ok_since: true, ..failure(3, 1) };
        assert!(matches!(fate(again, LIMITS, Duration::ZERO, "x"), Fate::Retry { spared: false, .. }));
        let last = Failure { link_ok_since: true, ..failure(4, 1) };
        assert_eq!(
            fate(last, LIMITS, Duration::ZERO, "HTTP 500"),
            Fate::GiveUp { reason: "gave up after 3 attempts: HTTP 500".into() }
        );
    }

    #[test]
    fn an_outage_longer_than_the_budget_dead_letters() {
        let within = Failure { outage: Some(Duration::from_secs(3599)), ..failure(9, 8) };
        assert!(matches!(fate(within, LIMITS, Duration::ZERO, "x"), Fate::Retry { spared: true, .. }));
        let beyond = Failure { outage: Some(Duration::from_secs(3601)), ..failure(9, 8) };
        match fate(beyond, LIMITS, Duration::ZERO, "timed out") {
            Fate::GiveUp { reason } => assert_eq!(
                reason,
                "the remote has been unavailable for 3601 s, longer than outage_budget (3600 s): timed out"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn probes_back_off_up_to_the_cap() {
        let d: Vec<u64> = (1..=8).map(|n| probe_delay(n, 0.999_999, Duration::from_secs(30)).as_secs()).collect();
        assert_eq!(d, [0, 1, 3, 7, 15, 30, 30, 30]);
    }
}
