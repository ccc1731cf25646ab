//! [`Error`]: everything the queue can refuse.

use std::fmt;

/// One of the queue's sub-queues, as upstream names them in metrics (`queue` label) and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueName {
    /// activeQ: pods ready to be popped.
    Active,
    /// backoffQ (podBackoffQ and podErrorBackoffQ): pods waiting out their backoff.
    Backoff,
    /// unschedulablePods: rejected pods waiting for an event that may help.
    Unschedulable,
    /// The part of unschedulablePods held back by a PreEnqueue plugin.
    Gated,
}

impl QueueName {
    /// The metric label: `active`, `backoff`, `unschedulable`, `gated`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            QueueName::Active => "active",
            QueueName::Backoff => "backoff",
            QueueName::Unschedulable => "unschedulable",
            QueueName::Gated => "gated",
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the queue refuses: malformed pods, pods it already holds, and bad configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The pod lacks a field the queue keys on.
    #[error("pod {pod:?} cannot be queued: {reason}")]
    InvalidPod {
        /// `namespace/name` as far as known.
        pod: String,
        /// What is missing.
        reason: &'static str,
    },
    /// `add_unschedulable_if_not_present` for a pod the queue already holds.
    #[error("pod {pod} is already present in the {queue} queue")]
    AlreadyPresent {
        /// `namespace/name`.
        pod: String,
        /// Where it is.
        queue: QueueName,
    },
    /// A plugin given as PreEnqueue plugin does not implement PreEnqueue.
    #[error("profile {profile}: plugin {plugin} is not a PreEnqueue plugin")]
    NotPreEnqueue {
        /// The profile.
        profile: String,
        /// The plugin.
        plugin: String,
    },
    /// A profile registers queueing hints for more plugins than the queue's plugin sets hold.
    #[error(
        "profile {profile}: {count} plugins register queueing hints, at most {max} are supported"
    )]
    TooManyPlugins {
        /// The profile.
        profile: String,
        /// How many plugins register events.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// `Result` with the queue's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
