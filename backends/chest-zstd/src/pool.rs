//! A small pool of helper threads shared by every zstd layer in the process,
//! so that one object's frames are (de)compressed on several threads without
//! starting threads per call.
//!
//! [`run`] runs `job(0)`, `job(1)`, … `job(count - 1)` on the calling thread
//! and on up to `threads - 1` helpers; each thread takes the next index until
//! none are left, so frames of unequal cost spread evenly. The pool starts
//! helpers as they are first asked for and keeps at most
//! `max(threads) - 1` of them (the largest thread setting of any layer,
//! capped at [`MAX_HELPERS`]): several callers at once share them instead of
//! oversubscribing the machine, each caller always working on its own task.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

/// The most helper threads the pool starts.
pub(crate) const MAX_HELPERS: usize = 63;

/// A job whose closure was lent by a caller of [`run`].
struct Task {
    /// The caller's closure, its lifetime erased. Only called by a thread
    /// counted in `active`, and [`run`] does not return (or unwind) before
    /// `active` is back to zero with no ticket of the task left in the queue,
    /// so the closure outlives every call.
    job: *const (dyn Fn(usize) + Sync + 'static),
    next: AtomicUsize,
    count: usize,
    /// Helpers that took a ticket of this task and have not finished it.
    active: Mutex<usize>,
    idle: Condvar,
    panicked: AtomicBool,
}

// SAFETY: `job` points to a `Sync` closure that outlives every use (see the
// field), so the task may be shared with and sent to the helpers.
unsafe impl Send for Task {}
unsafe impl Sync for Task {}

impl Task {
    /// Takes indices until none are left, running the job for each.
    fn work(&self) {
        // SAFETY: see `job`: the caller of `run` waits for this thread.
        let job = unsafe { &*self.job };
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.count {
                break;
            }
            if catch_unwind(AssertUnwindSafe(|| job(i))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
        }
    }
}

struct Pool {
    queue: Mutex<VecDeque<Arc<Task>>>,
    ready: Condvar,
    helpers: Mutex<usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; tolerate poison anyway.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        queue: Mutex::new(VecDeque::new()),
        ready: Condvar::new(),
        helpers: Mutex::new(0),
    })
}

impl Pool {
    /// Starts helpers until there are `want` (or as many as could be started).
    fn ensure_helpers(&'static self, want: usize) {
        let mut n = lock(&self.helpers);
        while *n < want.min(MAX_HELPERS) {
            let started = std::thread::Builder::new()
                .name(format!("chest-zstd-{}", *n))
                .spawn(move || self.help());
            if started.is_err() {
                break; // run() still completes: the caller does all the work
            }
            *n += 1;
        }
    }

    fn help(&self) {
        loop {
            let task = {
                let mut q = lock(&self.queue);
                loop {
                    if let Some(task) = q.pop_front() {
                        // Counted while the queue is locked, so a caller that
                        // finds no ticket left then waits for this thread.
                        *lock(&task.active) += 1;
                        break task;
                    }
                    q = self.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
                }
            };
            task.work();
            let mut active = lock(&task.active);
            *active -= 1;
            if *active == 0 {
                task.idle.notify_all();
            }
        }
    }
}

/// A job panicked (on the calling thread or a helper).
#[derive(Debug)]
pub(crate) struct Panicked;

/// Runs `job(i)` for every `i` in `0..count`, on the calling thread and up
/// to `threads - 1` helpers of the shared pool, and returns when all calls
/// have returned. With `threads <= 1` or `count <= 1` everything runs here.
/// A panic in a job is caught (the other indices still run) and reported.
pub(crate) fn run(
    count: usize,
    threads: usize,
    job: &(dyn Fn(usize) + Sync),
) -> Result<(), Panicked> {
    let helpers = threads.min(count).saturating_sub(1).min(MAX_HELPERS);
    if helpers == 0 {
        let mut panicked = false;
        for i in 0..count {
            panicked |= catch_unwind(AssertUnwindSafe(|| job(i))).is_err();
        }
        return if panicked { Err(Panicked) } else { Ok(()) };
    }
    let pool = pool();
    pool.ensure_helpers(helpers);
    // SAFETY: only the lifetime is erased; this function waits below until
    // no helper can call `job` any more (see `Task::job`).
    let job: *const (dyn Fn(usize) + Sync + 'static) = unsafe {
        std::mem::transmute::<
            *const (dyn Fn(usize) + Sync + '_),
            *const (dyn Fn(usize) + Sync + 'static),
        >(job)
    };
    let task = Arc::new(Task {
        job,
        next: AtomicUsize::new(0),
        count,
        active: Mutex::new(0),
        idle: Condvar::new(),
        panicked: AtomicBool::new(false),
    });
    {
        let mut q = lock(&pool.queue);
        for _ in 0..helpers {
            q.push_back(Arc::clone(&task));
        }
    }
    if helpers == 1 {
        pool.ready.notify_one();
    } else {
        pool.ready.notify_all();
    }
    task.work(); // catches panics itself, so the wait below always happens
    lock(&pool.queue).retain(|t| !Arc::ptr_eq(t, &task));
    let mut active = lock(&task.active);
    while *active > 0 {
        active = task
            .idle
            .wait(active)
            .unwrap_or_else(PoisonError::into_inner);
    }
    drop(active);
    if task.panicked.load(Ordering::Relaxed) {
        Err(Panicked)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_index_once() {
        for threads in [1, 2, 3, 8] {
            for count in [0, 1, 2, 5, 100] {
                let hits: Vec<AtomicUsize> = (0..count).map(|_| AtomicUsize::new(0)).collect();
                run(count, threads, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn callers_at_once_share_the_pool() {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for _ in 0..50 {
                        let sum = AtomicUsize::new(0);
                        run(16, 3, &|i| {
                            sum.fetch_add(i + t, Ordering::Relaxed);
                        })
                        .unwrap();
                        assert_eq!(sum.load(Ordering::Relaxed), 120 + 16 * t);
                    }
                });
            }
        });
    }

    #[test]
    fn a_panicking_job_is_reported() {
        for threads in [1, 2] {
            let done = AtomicUsize::new(0);
            let r = run(8, threads, &|i| {
                if i == 3 {
                    panic!("job 3 fails (expected by the test)");
                }
                done.fetch_add(1, Ordering::Relaxed);
            });
            assert!(r.is_err());
            assert_eq!(done.load(Ordering::Relaxed), 7);
        }
        // The pool still works afterwards.
        let n = AtomicUsize::new(0);
        run(4, 2, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 4);
    }
}
