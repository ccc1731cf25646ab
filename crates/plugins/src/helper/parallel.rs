//! Per-node work in PreFilter/PreScore on the profile's Filter/Score thread pool.

use ksched_framework::Handle;
use rayon::prelude::*;

/// Below this many items the work runs inline: waking the pool costs more.
const MIN_PARALLEL: usize = 64;

/// `f` over `items`, in order, on the framework's thread pool when there are enough items
/// (upstream `Parallelizer().Until` in PreFilter/PreScore).
pub fn par_map<T, R, F>(handle: &Handle, items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync + Send,
{
    if items.len() >= MIN_PARALLEL
        && let Some(fw) = handle.framework()
    {
        let p = fw.parallelizer();
        let chunk = p.chunk_size(items.len());
        return p.install(|| items.par_iter().with_min_len(chunk).map(&f).collect());
    }
    items.iter().map(f).collect()
}
