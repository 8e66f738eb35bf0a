//! The capture buffer: keys captured in this transaction, written to the outbox once, just
//! before commit.
//!
//! The triggers only append keys here (no SQL per row or statement); a pre-commit callback
//! inserts one outbox row per run of the same link, operation and origin (chunked), below the
//! SQL layer, so roles without rights on `syncbridge` are captured too. An error there
//! aborts the transaction, so an edit and its outbox entry commit together or not at all.
//! Keys captured inside a subtransaction that rolls back are dropped with it.

use crate::outbox::enqueue::{enqueue, Op};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::ffi::c_void;

struct Group {
    link_id: i64,
    op: Op,
    origin: Option<String>,
    subxact: pg_sys::SubTransactionId,
    keys: Keys,
}

/// Keys end to end in one string (one allocation for a whole statement's keys, not one each).
#[derive(Default)]
struct Keys {
    text: String,
    ends: Vec<usize>,
}

impl Keys {
    fn last(&self) -> Option<&str> {
        let end = *self.ends.last()?;
        let start = self.ends.len().checked_sub(2).map_or(0, |i| self.ends[i]);
        Some(&self.text[start..end])
    }

    fn push(&mut self, key: &str) {
        self.text.push_str(key);
        self.ends.push(self.text.len());
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn to_vec(&self) -> Vec<&str> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let key = &self.text[start..end];
                start = end;
                key
            })
            .collect()
    }
}

thread_local! {
    static PENDING: RefCell<Vec<Group>> = const { RefCell::new(Vec::new()) };
}

pub fn init() {
    // SAFETY: in _PG_init on the backend's main thread; `on_xact` and `on_subxact` have the callbacks' signatures.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

/// Records that `key` of `link_id` must be delivered (`Op::Upsert`) or deleted remotely.
pub fn push(link_id: i64, op: Op, origin: Option<&str>, key: &str) {
    with_group(link_id, op, origin, |keys| {
        // Repeated edits of one row in a row of statements coalesce here already; the
        // worker coalesces the rest.
        if keys.last() != Some(key) {
            keys.push(key)
        }
    });
}

/// Like [`push`] for many keys.
pub fn extend(link_id: i64, op: Op, origin: Option<&str>, new_keys: Vec<String>) {
    if !new_keys.is_empty() {
        with_group(link_id, op, origin, |keys| new_keys.iter().for_each(|k| keys.push(k)));
    }
}

fn with_group(link_id: i64, op: Op, origin: Option<&str>, f: impl FnOnce(&mut Keys)) {
    // SAFETY: reads the current subtransaction id; called from capture triggers, on the backend's main thread inside
    // a transaction.
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    PENDING.with(|p| {
        let mut groups = p.borrow_mut();
        // Only the newest group is extended, so the outbox keeps the order of operations.
        let same =
            |g: &Group| g.link_id == link_id && g.op == op && g.subxact == subxact && g.origin.as_deref() == origin;
        if !groups.last().is_some_and(same) {
            groups.push(Group { link_id, op, origin: origin.map(str::to_owned), subxact, keys: Keys::default() });
        }
        f(&mut groups.last_mut().expect("a group was just pushed").keys);
    });
}

/// Number of keys waiting for this transaction's commit (for tests and `explain`).
pub fn pending_keys() -> usize {
    PENDING.with(|p| p.borrow().iter().map(|g| g.keys.len()).sum())
}

/// Writes everything captured so far to the outbox. Runs at pre-commit; tests call it to see
/// the outbox inside a transaction that is rolled back.
pub fn flush() {
    let groups = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if groups.is_empty() {
        return;
    }
    for g in &groups {
        enqueue(g.link_id, g.op, &g.keys.to_vec(), g.origin.as_deref());
    }
}

/// Writes this transaction's captured keys to the outbox now instead of at commit, so that
/// `syncbridge.outbox` shows them inside the transaction (tests, debugging). Returns how many
/// keys were written. Safe to call any time: the rows still commit or roll back with the
/// transaction.
#[pg_extern(volatile, name = "_flush_capture")]
#[search_path(pg_catalog, pg_temp)]
fn flush_capture() -> i64 {
    let n = pending_keys() as i64;
    flush();
    n
}

/// # Safety
/// Called by PostgreSQL only, as a transaction callback on the backend's main thread.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => flush(),
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_COMMIT | XACT_EVENT_PREPARE => {
            PENDING.with(|p| p.borrow_mut().clear());
        }
        _ => {}
    }
}

/// # Safety
/// Called by PostgreSQL only, as a subtransaction callback on the backend's main thread.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    my: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    use pg_sys::SubXactEvent::*;
    match event {
        SUBXACT_EVENT_COMMIT_SUB => PENDING.with(|p| {
            for g in p.borrow_mut().iter_mut().filter(|g| g.subxact == my) {
                g.subxact = parent;
            }
        }),
        SUBXACT_EVENT_ABORT_SUB => PENDING.with(|p| p.borrow_mut().retain(|g| g.subxact != my)),
        _ => {}
    }
}
