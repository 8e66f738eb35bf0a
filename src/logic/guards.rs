//! Loop-guard decisions of SPEC §2 that do not need the database: given what is known of a
//! record, does this delivery (or this inbound write) go ahead? The callers (outbound batch,
//! inbound apply) gather the facts; these functions only decide, and say why.

use super::link_spec::{Guard, LOCAL_TOUCH};
use super::status::Status;

/// Why a record does not travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `fingerprint`: the same content was delivered last time.
    SameFingerprint,
    /// `last_touch`: the row was last written by a link, not by a user.
    NotTouchedLocally,
    /// `echo`: the incoming record equals the local row over the synced fields.
    NoChange,
}

impl Stop {
    /// The reason recorded with the `blocked` / `ignored` event.
    pub fn reason(self) -> &'static str {
        match self {
            Stop::SameFingerprint => "same fingerprint as the last delivery",
            Stop::NotTouchedLocally => "last touched by a link, not a user",
            Stop::NoChange => "no change",
        }
    }
}

/// What the outbound side knows of a record when it is about to send it.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Fingerprint of the payload about to be sent.
    pub fingerprint: &'a str,
    /// Fingerprint and outcome of the last outbound attempt, if any.
    pub last_fingerprint: Option<&'a str>,
    pub last_status: Option<Status>,
    /// `_sync_last_touch` of the row (`None` without tracking columns or for a deleted row).
    pub last_touch: Option<&'a str>,
}

/// Applies the outbound guards of `guards` in a fixed order; `Ok(())` means send.
///
/// * `fingerprint`: blocked when the fingerprint equals the last one delivered, except when
///   the last attempt failed or was ignored (then it is tried again).
/// * `last_touch`: only rows whose last touch is `local` travel (rows without the marker —
///   links without tracking columns, deletes — are not held back by it).
pub fn outbound(guards: &[Guard], rec: &Outgoing<'_>) -> Result<(), Stop> {
    if guards.contains(&Guard::LastTouch) {
        if let Some(touch) = rec.last_touch {
            if touch != LOCAL_TOUCH {
                return Err(Stop::NotTouchedLocally);
            }
        }
    }
    if guards.contains(&Guard::Fingerprint) {
        let retry = matches!(rec.last_status, Some(Status::Failed | Status::Ignored));
        if !retry && rec.last_fingerprint == Some(rec.fingerprint) {
            return Err(Stop::SameFingerprint);
        }
    }
    Ok(())
}

/// The `echo` guard on the way in: a record whose canonical form (after mapping, over the
/// synced fields) equals the local row's is not written.
pub fn inbound_echo(guards: &[Guard], incoming_fingerprint: &str, local_fingerprint: Option<&str>) -> Result<(), Stop> {
    if guards.contains(&Guard::Echo) && local_fingerprint == Some(incoming_fingerprint) {
        Err(Stop::NoChange)
    } else {
        Ok(())
    }
}

/// The runtime loop detector (`detector`): counts hops of one record between the systems
/// since the last user edit, and trips when more than `max_hops` fall within `window_secs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HopWindow {
    /// Times (seconds) of the hops since the last user edit, oldest first.
    hops: Vec<i64>,
}

impl HopWindow {
    /// A user edit: whatever bounced before was not a loop.
    pub fn user_edit(&mut self) {
        self.hops.clear();
    }

    /// Records a hop at `now` and tells whether the record must be quarantined.
    pub fn hop(&mut self, now: i64, max_hops: usize, window_secs: i64) -> bool {
        self.hops.retain(|t| now - *t < window_secs);
        self.hops.push(now);
        self.hops.len() > max_hops
    }

    pub fn count(&self) -> usize {
        self.hops.len()
    }

    pub fn from_times(hops: Vec<i64>) -> Self {
        Self { hops }
    }

    pub fn times(&self) -> &[i64] {
        &self.hops
    }
}

/// The loop detector's settings: more than `max_hops` hops within `window_secs` quarantine
/// a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detector {
    pub max_hops: usize,
    pub window_secs: i64,
}

impl Detector {
    pub const DEFAULT: Self = Self { max_hops: 6, window_secs: 600 };
}

/// What the detector says about an outbound delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Travel {
    /// Send it; `hops` is the record's window to keep afterwards.
    Go { hops: HopWindow },
    /// Quarantined (now or earlier): not sent until a user edit or `release`.
    Quarantine { hops: HopWindow, reason: String },
}

/// Decides an outbound delivery for the loop detector. A delivery that carries a user edit
/// starts afresh (and lifts a quarantine). One that does not, of a record that came back from
/// the remote since its last delivery, is a round trip — two hops, out and back. A quarantined
/// record stays so.
pub fn detect(d: Detector, now: i64, hops: Vec<i64>, user_edit: bool, came_back: bool, quarantined: bool) -> Travel {
    let mut w = HopWindow::from_times(hops);
    if user_edit {
        w.user_edit();
        return Travel::Go { hops: w };
    }
    if quarantined {
        let reason = "quarantined by the loop detector; a user edit or syncbridge.release() lifts it".to_string();
        return Travel::Quarantine { hops: w, reason };
    }
    if came_back && (w.hop(now, d.max_hops, d.window_secs) | w.hop(now, d.max_hops, d.window_secs)) {
        let reason = format!(
            "loop detector: {} hops within {} s without a user edit (limit {})",
            w.count(),
            d.window_secs,
            d.max_hops
        );
        return Travel::Quarantine { hops: w, reason };
    }
    Travel::Go { hops: w }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Guard; 2] = [Guard::Fingerprint, Guard::LastTouch];

    fn out<'a>(fp: &'a str, last: Option<&'a str>, status: Option<Status>, touch: Option<&'a str>) -> Outgoing<'a> {
        Outgoing { fingerprint: fp, last_fingerprint: last, last_status: status, last_touch: touch }
    }

    #[test]
    fn the_same_content_is_not_delivered_twice() {
        let rec = out("a", Some("a"), Some(Status::Delivered), Some("local"));
        assert_eq!(outbound(&ALL, &rec), Err(Stop::SameFingerprint));
        assert_eq!(outbound(&[Guard::Echo], &rec), Ok(()), "without the guard it goes");
        let changed = out("b", Some("a"), Some(Status::Delivered), Some("local"));
        assert_eq!(outbound(&ALL, &changed), Ok(()));
        let first = out("a", None, None, Some("local"));
        assert_eq!(outbound(&ALL, &first), Ok(()));
    }

    #[test]
    fn a_failed_or_ignored_attempt_is_tried_again() {
        for status in [Status::Failed, Status::Ignored] {
            assert_eq!(outbound(&ALL, &out("a", Some("a"), Some(status), Some("local"))), Ok(()), "{status:?}");
        }
        for status in [Status::Delivered, Status::Blocked, Status::Conflict] {
            assert_eq!(outbound(&ALL, &out("a", Some("a"), Some(status), Some("local"))), Err(Stop::SameFingerprint));
        }
    }

    #[test]
    fn only_rows_last_touched_by_a_user_travel_under_last_touch() {
        assert_eq!(outbound(&ALL, &out("b", Some("a"), None, Some("crm"))), Err(Stop::NotTouchedLocally));
        assert_eq!(outbound(&ALL, &out("b", Some("a"), None, None)), Ok(()), "no marker, not held back");
        assert_eq!(outbound(&[Guard::Fingerprint], &out("b", Some("a"), None, Some("crm"))), Ok(()));
    }

    #[test]
    fn echoes_are_not_written() {
        assert_eq!(inbound_echo(&[Guard::Echo], "a", Some("a")), Err(Stop::NoChange));
        assert_eq!(inbound_echo(&[Guard::Echo], "a", Some("b")), Ok(()));
        assert_eq!(inbound_echo(&[Guard::Echo], "a", None), Ok(()));
        assert_eq!(inbound_echo(&[Guard::Context], "a", Some("a")), Ok(()));
        assert_eq!(Stop::NoChange.reason(), "no change");
    }

    #[test]
    fn the_detector_trips_after_max_hops_in_the_window_and_resets_on_a_user_edit() {
        let mut w = HopWindow::default();
        for t in 0..5 {
            assert!(!w.hop(t, 5, 60), "hop {t} is within the limit");
        }
        assert!(w.hop(5, 5, 60), "the sixth hop within a minute trips");
        w.user_edit();
        assert_eq!(w.count(), 0);
        // Hops spread beyond the window never trip.
        let mut slow = HopWindow::default();
        for t in 0..100 {
            assert!(!slow.hop(t * 30, 5, 60));
        }
    }

    #[test]
    fn round_trips_without_a_user_edit_are_quarantined() {
        let d = Detector { max_hops: 6, window_secs: 600 };
        let mut hops = Vec::new();
        let mut trips = 0;
        loop {
            match detect(d, 1000 + trips, hops, false, true, false) {
                Travel::Go { hops: h } => hops = h.times().to_vec(),
                Travel::Quarantine { hops: h, reason } => {
                    assert_eq!(h.count(), 8, "the fourth round trip makes 8 hops > 6");
                    assert!(reason.contains("8 hops within 600 s"), "{reason}");
                    break;
                }
            }
            trips += 1;
            assert!(trips < 10, "never tripped");
        }
        assert_eq!(trips, 3);
    }

    #[test]
    fn user_edits_and_one_way_traffic_never_trip_the_detector() {
        let d = Detector::DEFAULT;
        let mut hops = Vec::new();
        for t in 0..10_000 {
            // Alternating: a local user edit, then a remote edit that came back.
            let user = t % 2 == 0;
            match detect(d, t, hops, user, !user, false) {
                Travel::Go { hops: h } => hops = h.times().to_vec(),
                other => panic!("tripped at {t}: {other:?}"),
            }
        }
        // Link writes that did not come back (reflections, writebacks) are not round trips.
        assert!(matches!(detect(d, 0, vec![1; 6], false, false, false), Travel::Go { .. }));
        // A quarantined record stays so until a user edit.
        assert!(matches!(detect(d, 0, vec![], false, false, true), Travel::Quarantine { .. }));
        assert!(matches!(detect(d, 0, vec![1; 8], true, true, true), Travel::Go { hops } if hops.count() == 0));
    }

    #[test]
    fn statuses_parse() {
        assert_eq!(Status::parse("failed"), Some(Status::Failed));
        assert_eq!(Status::parse("nope"), None);
    }
}
