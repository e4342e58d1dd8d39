//! A spin-then-park helper pool for the kernels' short parallel regions.
//!
//! A decode step of a small LLM is a few hundred matrix-vector products of 2-15 µs each.
//! Waking a sleeping rayon worker for each costs about as much as it saves (measured: every
//! product split over 2 threads made decode slower), so those products ran on one thread
//! and a second thread bought ~10 %. Here helper threads spin on an epoch counter for a
//! short while after each job (so the next product, microseconds later, starts at once) and
//! park only when no job came for [`SPIN_FOR`].
//!
//! One job at a time: a second caller (another thread, or a nested call from inside a job)
//! runs its chunks inline. A job's chunks are claimed through one atomic word holding the
//! job's epoch and the next chunk index, so a helper still holding an old job can never
//! claim a chunk of a newer one; the submitter returns only when every chunk has finished,
//! which is what keeps the borrowed closure alive for as long as any helper can call it.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks.
const SPIN_FOR: Duration = Duration::from_micros(300);

/// The body of a job with its lifetime erased (see `Shared::job`).
type Body = dyn Fn(usize) + Sync;

struct Job {
    epoch: u32,
    /// Valid while the job's submitter is inside [`run`], which it does not leave before
    /// every chunk of this epoch is done.
    body: *const Body,
    chunks: usize,
    helpers: usize,
}

// SAFETY: the pointer is only dereferenced by a helper that claimed a chunk of this job's
// epoch, which can only happen while the submitter is still waiting in `run` (see `claim`).
unsafe impl Send for Job {}

struct Shared {
    /// The current job; read by a helper once per epoch.
    job: Mutex<Option<Job>>,
    /// `epoch << 32 | next chunk`: claims go through one compare-exchange on this word.
    state: AtomicU64,
    /// The latest published epoch, which idle helpers watch.
    epoch: AtomicU64,
    /// Chunks finished in the current epoch.
    done: AtomicUsize,
    /// A chunk of the current epoch panicked on a helper.
    panicked: AtomicBool,
    /// One submitter at a time.
    submit: Mutex<Vec<Thread>>,
}

fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| Shared {
        job: Mutex::new(None),
        state: AtomicU64::new(0),
        epoch: AtomicU64::new(0),
        done: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
        submit: Mutex::new(Vec::new()),
    })
}

/// Claims and runs chunks of epoch `epoch` until none is left. A chunk that panics sets
/// `panicked` *before* it counts as done, so the submitter, which reads the flag only after
/// `done == chunks`, cannot miss it, and no late store can leak into the next job.
fn work(sh: &Shared, epoch: u32, body: *const Body, chunks: usize) {
    loop {
        let s = sh.state.load(Ordering::Acquire);
        let c = (s & 0xFFFF_FFFF) as usize;
        if (s >> 32) as u32 != epoch || c >= chunks {
            return;
        }
        if sh
            .state
            .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue;
        }
        // SAFETY: chunk `c` of `epoch` is claimed and not yet counted in `done`, so the
        // submitter of `epoch` is still in `run`, where `body` points to its live closure.
        let f = unsafe { &*body };
        if catch_unwind(AssertUnwindSafe(|| f(c))).is_err() {
            sh.panicked.store(true, Ordering::Release);
        }
        sh.done.fetch_add(1, Ordering::Release);
    }
}

fn helper(index: usize) {
    let sh = shared();
    let mut seen = sh.epoch.load(Ordering::Acquire);
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        while sh.epoch.load(Ordering::Acquire) == seen {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() > SPIN_FOR {
                std::thread::park_timeout(Duration::from_millis(100));
            } else {
                std::hint::spin_loop();
            }
        }
        seen = sh.epoch.load(Ordering::Acquire);
        let job = match sh.job.lock() {
            Ok(g) => g.as_ref().map(|j| (j.epoch, j.body, j.chunks, j.helpers)),
            Err(e) => e
                .into_inner()
                .as_ref()
                .map(|j| (j.epoch, j.body, j.chunks, j.helpers)),
        };
        if let Some((epoch, body, chunks, helpers)) = job {
            if index < helpers {
                work(sh, epoch, body, chunks);
            }
        }
    }
}

/// Runs `body(c)` for every `c < chunks`, on this thread and up to `helpers` helper
/// threads; returns when all are done (re-raising a panic of any chunk). Runs everything
/// inline when another job is in flight.
pub(crate) fn run(chunks: usize, helpers: usize, body: &(dyn Fn(usize) + Sync)) {
    let sh = shared();
    let mut threads = match sh.submit.try_lock() {
        Ok(g) => g,
        Err(_) => {
            (0..chunks).for_each(body);
            return;
        }
    };
    while threads.len() < helpers {
        let i = threads.len();
        match std::thread::Builder::new()
            .name(format!("edgeai-kernel-{i}"))
            .spawn(move || helper(i))
        {
            Ok(h) => threads.push(h.thread().clone()),
            Err(e) => {
                tracing::warn!("cannot start a kernel helper thread ({e})");
                break;
            }
        }
    }
    let helpers = helpers.min(threads.len());
    if helpers > 0 {
        super::counters::job();
    }
    let epoch = (sh.epoch.load(Ordering::Relaxed) as u32).wrapping_add(1);
    // SAFETY (lifetime erasure): `body` is only called for chunks of `epoch`, and this
    // function returns only after all of them are done (`done == chunks` below), also when
    // a chunk panics (caught, then re-raised after the wait).
    let erased: *const Body =
        unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const Body>(body) };
    {
        let mut j = sh.job.lock().unwrap_or_else(|e| e.into_inner());
        *j = Some(Job {
            epoch,
            body: erased,
            chunks,
            helpers,
        });
    }
    sh.done.store(0, Ordering::Relaxed);
    sh.panicked.store(false, Ordering::Relaxed);
    sh.state.store((epoch as u64) << 32, Ordering::Release);
    sh.epoch.store(epoch as u64, Ordering::Release);
    for t in threads.iter().take(helpers) {
        t.unpark();
    }
    work(sh, epoch, erased, chunks);
    while sh.done.load(Ordering::Acquire) < chunks {
        std::hint::spin_loop();
    }
    let panicked = sh.panicked.load(Ordering::Acquire);
    drop(threads);
    if panicked {
        resume_unwind(Box::new("a kernel chunk panicked"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_chunk_runs_once_and_a_panic_is_raised_once() {
        for round in 0..200 {
            let hits: Vec<AtomicUsize> = (0..37).map(|_| AtomicUsize::new(0)).collect();
            run(hits.len(), 1, &|c| {
                hits[c].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "round {round}"
            );
            // A panic in any chunk (on whichever thread claims it) is re-raised ...
            let bad = round % 37;
            let r = catch_unwind(|| run(37, 1, &|c| assert_ne!(c, bad, "chunk {c} fails")));
            assert!(
                r.is_err(),
                "round {round}: the panic of chunk {bad} was lost"
            );
            // ... and does not leak into the next job.
            run(37, 1, &|_| {});
        }
    }
}
