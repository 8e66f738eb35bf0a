//! The tracing layer that turns events into log lines (no PostgreSQL here: the caller passes
//! the function that writes a line).
//!
//! On the thread that installed it (the worker's main thread) a line is written at once; on
//! any other thread (the transport's tokio threads, which must never call into PostgreSQL)
//! it waits in a bounded queue until the main thread [`Shared::drain`]s it. When the queue
//! is full, lines are dropped and counted.

use super::line::{self, Fields, Level};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Only our own spans and events: hyper, h2 and friends have tracing events of their own.
const TARGET: &str = "pg_syncbridge";

/// What the layer and the main thread share.
pub struct Shared {
    threshold: AtomicU8,
    main: ThreadId,
    queue: Mutex<VecDeque<(Level, String)>>,
    capacity: usize,
    dropped: AtomicU64,
}

impl Shared {
    pub fn new(main: ThreadId, threshold: Level, capacity: usize) -> Self {
        Self {
            threshold: AtomicU8::new(threshold as u8),
            main,
            queue: Mutex::new(VecDeque::new()),
            capacity,
            dropped: AtomicU64::new(0),
        }
    }

    pub fn threshold(&self) -> Level {
        match self.threshold.load(Ordering::Relaxed) {
            0 => Level::Debug,
            1 => Level::Log,
            _ => Level::Warning,
        }
    }

    pub fn set_threshold(&self, level: Level) {
        self.threshold.store(level as u8, Ordering::Relaxed);
    }

    fn push(&self, level: Level, text: String) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() < self.capacity {
            queue.push_back((level, text));
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The lines other threads queued, and how many were dropped since the last drain.
    pub fn drain(&self) -> (Vec<(Level, String)>, u64) {
        let lines = self.queue.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect();
        (lines, self.dropped.swap(0, Ordering::Relaxed))
    }
}

pub struct LineLayer {
    shared: Arc<Shared>,
    /// Writes a line; called on the main thread only.
    write: fn(Level, &str),
}

impl LineLayer {
    pub fn new(shared: Arc<Shared>, write: fn(Level, &str)) -> Self {
        Self { shared, write }
    }
}

impl<S> Layer<S> for LineLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // `sometimes`, not cached: the threshold follows reloads.
        if metadata.target().starts_with(TARGET) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        let level = Level::of(metadata.level());
        let threshold = self.shared.threshold();
        metadata.target().starts_with(TARGET)
            && if metadata.is_span() { level.span_passes(threshold) } else { level.passes(threshold) }
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = Level::of(event.metadata().level());
        let mut fields = Fields::default();
        event.record(&mut fields);
        let segments: Vec<Option<String>> = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|span| {
                        let ext = span.extensions();
                        line::segment(span.name(), ext.get::<Fields>().unwrap_or(&Fields::default()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let text = line::format(segments, &fields);
        if std::thread::current().id() == self.shared.main {
            (self.write)(level, &text);
        } else {
            self.shared.push(level, text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use tracing_subscriber::layer::SubscriberExt;

    thread_local! {
        static WRITTEN: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    }

    fn write(level: Level, text: &str) {
        WRITTEN.with(|w| w.borrow_mut().push((level, text.to_string())));
    }

    fn written() -> Vec<(Level, String)> {
        WRITTEN.with(|w| w.borrow_mut().drain(..).collect())
    }

    /// Runs `f` with the layer as this thread's subscriber, this thread as the main one.
    fn on_main(shared: &Arc<Shared>, f: impl FnOnce()) {
        let subscriber = tracing_subscriber::registry().with(LineLayer::new(shared.clone(), write));
        tracing::subscriber::with_default(subscriber, f);
    }

    fn a_batch() {
        let _link = tracing::info_span!("link", name = "crm").entered();
        let _batch = tracing::info_span!("batch", seq = 12u64, records = 500usize).entered();
        tracing::debug!("{} of {} deliveries delivered, {} failed", 500, 500, 0);
        tracing::warn!("record {} quarantined", 7);
    }

    #[test]
    fn the_main_thread_writes_lines_with_their_spans_fields() {
        let shared = Arc::new(Shared::new(std::thread::current().id(), Level::Debug, 8));
        on_main(&shared, a_batch);
        assert_eq!(
            written(),
            vec![
                (Level::Debug, "pg_syncbridge: link crm: batch 12: 500 of 500 deliveries delivered, 0 failed".into()),
                (Level::Warning, "pg_syncbridge: link crm: batch 12: record 7 quarantined".into()),
            ]
        );
        assert_eq!(shared.drain(), (vec![], 0), "nothing queued on the main thread");
    }

    #[test]
    fn the_threshold_filters_and_follows_changes() {
        let shared = Arc::new(Shared::new(std::thread::current().id(), Level::Warning, 8));
        on_main(&shared, a_batch);
        assert_eq!(written(), vec![(Level::Warning, "pg_syncbridge: link crm: batch 12: record 7 quarantined".into())]);
        shared.set_threshold(Level::Log);
        on_main(&shared, || tracing::info!("pruned 1 events older than 60 minutes"));
        assert_eq!(written(), vec![(Level::Log, "pg_syncbridge: pruned 1 events older than 60 minutes".into())]);
        shared.set_threshold(Level::Warning);
        on_main(&shared, || tracing::info!("not at warning"));
        assert_eq!(written(), vec![]);
    }

    #[test]
    fn debug_spans_are_dropped_above_debug_but_their_parents_stay() {
        let shared = Arc::new(Shared::new(std::thread::current().id(), Level::Warning, 8));
        on_main(&shared, || {
            let _link = tracing::info_span!("link", name = "crm").entered();
            let _req = tracing::debug_span!("request", method = "GET", url = "http://r/crm").entered();
            tracing::warn!("slow");
        });
        assert_eq!(written(), vec![(Level::Warning, "pg_syncbridge: link crm: slow".into())]);
    }

    #[test]
    fn other_threads_queue_their_lines_and_drop_when_full() {
        // The main thread is one that has ended: this test's thread is "another" thread.
        let main = std::thread::spawn(|| std::thread::current().id()).join().unwrap();
        let shared = Arc::new(Shared::new(main, Level::Debug, 2));
        on_main(&shared, || {
            let _link = tracing::info_span!("link", name = "crm").entered();
            let _req = tracing::debug_span!("request", method = "POST", url = "http://r/crm").entered();
            for i in 0..5 {
                tracing::debug!(bytes = 10 * i, "HTTP 201 in {i} ms");
            }
        });
        assert_eq!(written(), vec![], "nothing written off the main thread");
        let (lines, dropped) = shared.drain();
        assert_eq!(
            lines,
            vec![
                (Level::Debug, "pg_syncbridge: link crm: POST http://r/crm: HTTP 201 in 0 ms (bytes=0)".into()),
                (Level::Debug, "pg_syncbridge: link crm: POST http://r/crm: HTTP 201 in 1 ms (bytes=10)".into()),
            ]
        );
        assert_eq!(dropped, 3);
        assert_eq!(shared.drain(), (vec![], 0), "a drain empties the queue and resets the count");
    }

    #[test]
    fn spans_follow_a_future_onto_a_runtime_thread() {
        use tracing::Instrument;
        let main = std::thread::current().id();
        let shared = Arc::new(Shared::new(main, Level::Debug, 8));
        let subscriber = tracing_subscriber::registry().with(LineLayer::new(shared.clone(), write));
        let dispatch = tracing::Dispatch::new(subscriber);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        tracing::dispatcher::with_default(&dispatch, || {
            let batch = {
                let _link = tracing::info_span!("link", name = "crm").entered();
                tracing::info_span!("batch", seq = 3u64)
            };
            let d = dispatch.clone();
            let job = async move {
                tracing::dispatcher::with_default(&d, || tracing::debug!("sent"));
            };
            rt.block_on(async move { tokio::spawn(job.instrument(batch)).await.unwrap() });
        });
        let (lines, _) = shared.drain();
        assert_eq!(lines, vec![(Level::Debug, "pg_syncbridge: link crm: batch 3: sent".into())]);
    }
}
