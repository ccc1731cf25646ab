use std::time::Duration;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while running or using the test control plane.
///
/// Start-up errors carry the tail of the supervisor's output, which includes the last log lines
/// of the component (etcd or kube-apiserver) that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `testenv/build.sh` failed or the binaries are missing.
    #[error("control-plane binaries: {0}")]
    Binaries(String),

    /// The control plane (or a component such as kube-scheduler) failed to start.
    #[error("{message}{}", section("last output of ksched-testenv", .output))]
    Startup {
        /// What failed.
        message: String,
        /// The last lines printed by the supervisor (contains the component's log tail).
        output: String,
    },

    /// The shared control plane of this test binary failed to start (once; not retried).
    #[error("the shared control plane failed to start earlier in this test binary:\n{0}")]
    SharedStartup(String),

    /// The control plane or a component exited while it was expected to run.
    #[error("{message}{}", section("last output", .output))]
    NotRunning {
        /// What stopped.
        message: String,
        /// The last lines of its output.
        output: String,
    },

    /// A wait ran out of time.
    #[error("timed out after {timeout:?} waiting for {what}{details}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long we waited.
        timeout: Duration,
        /// Diagnostics gathered at the time of the timeout (may be empty).
        details: String,
    },

    /// Reading the generated kubeconfig failed.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),

    /// A Kubernetes API request failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),

    /// Watching an object failed.
    #[error(transparent)]
    Wait(#[from] kube::runtime::wait::Error),

    /// A local I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn section(title: &str, text: &str) -> String {
    if text.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- {title} ---\n{text}\n--- end ---")
    }
}

impl Error {
    /// The HTTP status code if this is an API error returned by kube-apiserver
    /// (e.g. `Some(409)` for a conflict).
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Error::Kube(kube::Error::Api(status)) => Some(status.code),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
