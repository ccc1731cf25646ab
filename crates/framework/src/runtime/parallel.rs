//! Running per-node work across threads, and how many feasible nodes a cycle looks for.

use std::{
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// Below this many nodes every node is evaluated.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never goes below this.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// How many feasible nodes to find before scoring, upstream's `numFeasibleNodesToFind`:
/// all nodes below 100; else `percentage` % of them (adaptive when 0: 50 − nodes/125, at
/// least 5 %), but never fewer than 100.
///
/// ```
/// use ksched_framework::runtime::num_feasible_nodes_to_find;
/// assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
/// assert_eq!(num_feasible_nodes_to_find(0, 1000), 420);
/// assert_eq!(num_feasible_nodes_to_find(0, 5000), 500);
/// assert_eq!(num_feasible_nodes_to_find(0, 15000), 750);
/// assert_eq!(num_feasible_nodes_to_find(100, 5000), 5000);
/// ```
#[must_use]
pub fn num_feasible_nodes_to_find(percentage: u32, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let mut pct = percentage as usize;
    if pct == 0 {
        pct = 50usize
            .saturating_sub(num_all_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    let n = num_all_nodes * pct.min(100) / 100;
    n.max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Work expected to take less than this on the calling thread is not split: waking a pool
/// thread (a futex wake and a context switch, tens of µs on a busy machine) would cost more
/// than it saves.
const INLINE_BUDGET: Duration = Duration::from_micros(60);

/// Work expected to take longer than this hands the tokio worker over (`block_in_place`)
/// before going on, so other tasks (binding cycles, informers) are not held up by it.
const BLOCKING_BUDGET: Duration = Duration::from_millis(1);

/// The thread pool for Filter and Score, and the chunked loop they run on.
///
/// Upstream runs `parallelism` goroutines (16 by default), which are cheap; here the pool has
/// `min(parallelism, available cores)` OS threads (a deviation: 16 threads on 2 cores spent
/// their time spinning, yielding and waking each other), and the calling thread takes part
/// in the work. Rayon rather than the async runtime: this is CPU-bound fan-out over thousands
/// of nodes.
#[derive(Clone)]
pub struct Parallelizer {
    pool: Arc<rayon::ThreadPool>,
    parallelism: usize,
    workers: usize,
}

impl Parallelizer {
    /// A pool for `parallelism` (at least 1), with `min(parallelism, available cores)`
    /// threads.
    ///
    /// # Errors
    /// The OS refused to start the threads.
    pub fn new(parallelism: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self::with_workers(parallelism, cores)
    }

    /// A pool for `parallelism` with at most `cores` threads (tests use it to get several
    /// threads on any machine).
    ///
    /// # Errors
    /// The OS refused to start the threads.
    pub fn with_workers(
        parallelism: usize,
        cores: usize,
    ) -> Result<Self, rayon::ThreadPoolBuildError> {
        let parallelism = parallelism.max(1);
        let workers = parallelism.min(cores.max(1));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("ksched-parallel-{i}"))
            .build()?;
        Ok(Self {
            pool: Arc::new(pool),
            parallelism,
            workers,
        })
    }

    /// Configured parallelism (`parallelism` of the configuration).
    #[must_use]
    pub fn parallelism(&self) -> usize {
        self.parallelism
    }

    /// Threads that actually run work at once: `min(parallelism, available cores)`.
    #[must_use]
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Runs `f` on the pool and waits for it. Called from async code it hands the tokio
    /// worker over first (`block_in_place`) so other tasks keep running.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        if in_multi_thread_runtime() {
            tokio::task::block_in_place(|| self.pool.install(f))
        } else {
            self.pool.install(f)
        }
    }

    /// Chunk size for `pieces` work items, upstream's `max(1, min(sqrt(n), n/parallelism+1))`.
    #[must_use]
    pub fn chunk_size(&self, pieces: usize) -> usize {
        let sqrt = pieces.isqrt();
        sqrt.min(pieces / self.parallelism + 1).max(1)
    }

    /// Runs `work` over `0..pieces` in chunks of `chunk` (upstream `Parallelizer.Until`),
    /// chunks handed out in increasing order. Each participating thread gets its own state
    /// from `init`; the states are returned (in no particular order) once every claimed chunk
    /// is done. `work` returns `false` to stop: no further chunk is claimed by anyone, chunks
    /// already claimed are finished. Its third argument says whether the calling thread is
    /// running alone (no pool thread has joined yet), i.e. chunks run strictly in order.
    ///
    /// The calling thread starts alone and measures its first chunk; `remaining` tells from
    /// the state after it how many pieces are still expected to be needed (a Filter that
    /// stops early needs fewer than all). Only when those are estimated to take longer than a
    /// pool wake-up is worth do up to `workers() - 1` pool threads join in. Every chunk below
    /// the highest claimed one has been run completely when this returns — callers rely on
    /// that to rebuild a sequential scan's result.
    pub fn until<S, I, W, E>(
        &self,
        pieces: usize,
        chunk: usize,
        init: I,
        work: W,
        remaining: E,
    ) -> Vec<S>
    where
        S: Send,
        I: Fn() -> S + Sync,
        W: Fn(&mut S, Range<usize>, bool) -> bool + Sync,
        E: FnOnce(&S) -> usize,
    {
        let chunk = chunk.max(1);
        let chunks = pieces.div_ceil(chunk);
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        // One thread's loop: claim the next chunk until none is left or someone stopped.
        let run = |state: &mut S, solo: bool| {
            while !stop.load(Ordering::Relaxed) {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= chunks {
                    break;
                }
                let range = c * chunk..((c + 1) * chunk).min(pieces);
                if !work(state, range, solo) {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        };
        let mut mine = init();
        if chunks == 0 {
            return vec![mine];
        }
        let t = Instant::now();
        // The first chunk, to estimate the rest.
        next.store(1, Ordering::Relaxed);
        if !work(&mut mine, 0..chunk.min(pieces), true) {
            return vec![mine];
        }
        if chunks == 1 {
            return vec![mine];
        }
        let expected_chunks = remaining(&mine).min(pieces).div_ceil(chunk).min(chunks - 1);
        let estimate = t
            .elapsed()
            .saturating_mul(u32::try_from(expected_chunks).unwrap_or(u32::MAX));
        if self.workers <= 1 || estimate < INLINE_BUDGET {
            run(&mut mine, true);
            return vec![mine];
        }
        let helpers = (self.workers - 1).min(chunks - 1);
        let rest = || {
            let theirs = parking_lot::Mutex::new(Vec::with_capacity(helpers));
            self.pool.in_place_scope(|s| {
                for _ in 0..helpers {
                    s.spawn(|_| {
                        // A helper that wakes after the work is gone adds nothing.
                        if stop.load(Ordering::Relaxed) || next.load(Ordering::Relaxed) >= chunks {
                            return;
                        }
                        let mut st = init();
                        run(&mut st, false);
                        theirs.lock().push(st);
                    });
                }
                run(&mut mine, false);
            });
            let mut all = theirs.into_inner();
            all.push(mine);
            all
        };
        if estimate >= BLOCKING_BUDGET && in_multi_thread_runtime() {
            tokio::task::block_in_place(rest)
        } else {
            rest()
        }
    }
}

fn in_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

impl std::fmt::Debug for Parallelizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parallelizer")
            .field("parallelism", &self.parallelism)
            .field("workers", &self.workers)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_counts() {
        // 50 nodes: all. 100: all (100 * 50 % = 50 → raised to 100). 1000: 42 %.
        // 5000: 10 %. 15000: floor of 5 %.
        assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(0, 100), 100);
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420);
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500);
        assert_eq!(num_feasible_nodes_to_find(0, 15000), 750);
        assert_eq!(num_feasible_nodes_to_find(0, 5625), 281);
        assert_eq!(num_feasible_nodes_to_find(30, 1000), 300);
        assert_eq!(num_feasible_nodes_to_find(1, 1000), 100);
        assert_eq!(num_feasible_nodes_to_find(0, 0), 0);
    }

    /// The pieces `until` ran over 0..1000 in chunks of 10 (sorted), slow enough for the pool
    /// to join in, stopping after the chunk holding `stop_at`.
    fn pieces_run(p: &Parallelizer, stop_at: usize) -> Vec<usize> {
        let parts = p.until(
            1000,
            10,
            Vec::new,
            |seen: &mut Vec<usize>, r: Range<usize>, _| {
                std::thread::sleep(Duration::from_micros(20));
                let stop = r.contains(&stop_at);
                seen.extend(r);
                !stop
            },
            |_| 1000,
        );
        let mut all: Vec<usize> = parts.into_iter().flatten().collect();
        all.sort_unstable();
        all
    }

    #[test]
    fn until_runs_every_claimed_chunk_once_and_stops_on_request() {
        let p = Parallelizer::with_workers(4, 4).unwrap();
        assert_eq!(p.workers(), 4);
        assert_eq!(pieces_run(&p, usize::MAX), (0..1000).collect::<Vec<_>>());
        // Stopping at piece 500: what ran is a prefix of whole chunks reaching past it.
        let all = pieces_run(&p, 500);
        assert!(all.len() >= 510, "{}", all.len());
        assert_eq!(all, (0..all.len()).collect::<Vec<_>>());
    }

    #[test]
    fn workers_are_capped_by_cores() {
        let p = Parallelizer::with_workers(16, 2).unwrap();
        assert_eq!((p.parallelism(), p.workers()), (16, 2));
        // Upstream's chunking still follows the configured parallelism.
        assert_eq!(p.chunk_size(5000), 70);
    }

    #[test]
    fn chunks() {
        let p = Parallelizer::new(16).unwrap();
        assert_eq!(p.chunk_size(0), 1);
        assert_eq!(p.chunk_size(5000), 70);
        assert_eq!(p.chunk_size(100), 7);
    }
}
