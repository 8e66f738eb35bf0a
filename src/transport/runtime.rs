//! The runtime and the way results come back: each finished job sends its result over a
//! channel and then calls `wake` (the worker passes a function that signals its own process,
//! which sets its latch), so the main thread never polls.

use std::future::Future;
use std::io;
use std::sync::mpsc;

pub struct Transport<T> {
    rt: tokio::runtime::Runtime,
    tx: mpsc::Sender<T>,
    rx: mpsc::Receiver<T>,
    wake: fn(),
}

impl<T: Send + 'static> Transport<T> {
    /// Starts `threads` runtime threads. They are created with every signal blocked, so the
    /// kernel delivers the server's signals (SIGTERM, SIGHUP, SIGUSR1) to the main thread.
    pub fn start(threads: usize, wake: fn()) -> io::Result<Self> {
        let saved = block_all_signals();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .max_blocking_threads(2)
            .thread_name("syncbridge-http")
            .enable_time()
            .enable_io()
            .on_thread_start(|| {
                block_all_signals();
            })
            .build();
        restore_signals(&saved);
        let (tx, rx) = mpsc::channel();
        Ok(Self { rt: rt?, tx, rx, wake })
    }

    /// Runs `job` on the runtime; its result arrives through [`Transport::try_recv`].
    pub fn spawn(&self, job: impl Future<Output = T> + Send + 'static) {
        let tx = self.tx.clone();
        let wake = self.wake;
        self.rt.spawn(async move {
            let result = job.await;
            if tx.send(result).is_ok() {
                wake();
            }
        });
    }

    /// The runtime, for a server that runs on it beside the jobs (the webhook listener).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.rt.handle()
    }

    /// A finished job's result, if one is waiting.
    pub fn try_recv(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigfillset and pthread_sigmask write only the two local sigset_t values (valid zeroed) and this
    // thread's signal mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    }
}

fn restore_signals(saved: &libc::sigset_t) {
    // SAFETY: `saved` is a mask pthread_sigmask filled in `block_all_signals`; this only sets the calling thread's
    // mask.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, saved, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn results_come_back_through_the_channel() {
        let t: Transport<u32> = Transport::start(1, || {}).unwrap();
        t.spawn(async { 41 + 1 });
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = loop {
            if let Some(v) = t.try_recv() {
                break v;
            }
            assert!(Instant::now() < deadline, "no result");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(got, 42);
    }
}
