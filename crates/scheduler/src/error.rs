//! The scheduler's error type.

use ksched_framework::config::ConfigError;

/// Everything that stops the scheduler from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid (exit code 2 in the binary).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The kube client could not be built.
    #[error("kube client: {0}")]
    Client(String),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Leader election failed or leadership was lost.
    #[error("leader election: {0}")]
    LeaderElection(String),
    /// The HTTP server could not start.
    #[error("serving {addr}: {source}")]
    Http {
        /// The bind address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The builder is missing something.
    #[error("scheduler builder: {0}")]
    Builder(String),
    /// A plugin registration clashed.
    #[error(transparent)]
    DuplicatePlugin(#[from] ksched_framework::DuplicatePlugin),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
