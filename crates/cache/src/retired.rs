//! [`Retired`]: NodeInfo copies a snapshot update replaced, dropped off the caller's path.
//!
//! When many nodes changed, the snapshot's previous copies hold the last references to the
//! nodes' previous pod lists. Dropping them decrements the reference count of every pod on
//! those nodes, one cache miss each: about 20 ms for 5000 nodes with 30 pods, three times the
//! update itself. Large batches therefore go to a background thread; small ones are dropped
//! right away (after the cache lock is released).

use std::sync::{Arc, OnceLock, mpsc};

use ksched_framework::NodeInfo;

/// Below this many retired nodes, dropping in place is cheaper than a hand-over.
const BACKGROUND_THRESHOLD: usize = 256;

/// What a snapshot update replaced.
#[derive(Default)]
pub(crate) struct Retired {
    /// Replaced NodeInfo copies.
    pub(crate) nodes: Vec<Arc<NodeInfo>>,
    /// Replaced node lists.
    pub(crate) lists: Vec<Arc<Vec<Arc<NodeInfo>>>>,
}

impl Retired {
    fn size(&self) -> usize {
        self.nodes.len() + self.lists.iter().map(|l| l.len()).sum::<usize>()
    }

    /// Drops the batch, in the background if it is large and the dropper thread runs.
    pub(crate) fn dispose(self) {
        if self.size() < BACKGROUND_THRESHOLD {
            return;
        }
        if let Some(tx) = dropper()
            && let Err(mpsc::SendError(retired)) = tx.send(self)
        {
            drop(retired);
        }
    }
}

/// The background dropper, started on first use; `None` if the thread could not be spawned.
fn dropper() -> Option<&'static mpsc::Sender<Retired>> {
    static DROPPER: OnceLock<Option<mpsc::Sender<Retired>>> = OnceLock::new();
    DROPPER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Retired>();
            std::thread::Builder::new()
                .name("ksched-cache-drop".into())
                .spawn(move || rx.into_iter().for_each(drop))
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}
