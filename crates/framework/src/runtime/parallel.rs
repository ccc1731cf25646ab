//! Running per-node work across threads, and how many feasible nodes a cycle looks for.

use std::sync::Arc;

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

/// A dedicated thread pool (`parallelism` threads) for Filter and Score. Rayon rather than the
/// async runtime: this is CPU-bound fan-out over thousands of nodes, and work stealing keeps
/// the threads busy when some nodes are slower to evaluate than others.
#[derive(Clone)]
pub struct Parallelizer {
    pool: Arc<rayon::ThreadPool>,
    parallelism: usize,
}

impl Parallelizer {
    /// A pool of `parallelism` threads (at least 1).
    ///
    /// # Errors
    /// The OS refused to start the threads.
    pub fn new(parallelism: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
        let parallelism = parallelism.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(parallelism)
            .thread_name(|i| format!("ksched-parallel-{i}"))
            .build()?;
        Ok(Self {
            pool: Arc::new(pool),
            parallelism,
        })
    }

    /// Configured threads.
    #[must_use]
    pub fn parallelism(&self) -> usize {
        self.parallelism
    }

    /// Runs `f` on the pool and waits for it. Called from async code it hands the tokio
    /// worker over first (`block_in_place`) so other tasks keep running.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let in_multi_thread_runtime = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if in_multi_thread_runtime {
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
}

impl std::fmt::Debug for Parallelizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parallelizer")
            .field("parallelism", &self.parallelism)
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

    #[test]
    fn chunks() {
        let p = Parallelizer::new(16).unwrap();
        assert_eq!(p.chunk_size(0), 1);
        assert_eq!(p.chunk_size(5000), 70);
        assert_eq!(p.chunk_size(100), 7);
    }
}
