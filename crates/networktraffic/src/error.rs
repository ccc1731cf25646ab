//! The crate's one error type.

use std::path::PathBuf;

use ksched_framework::PluginError;

/// Everything that can go wrong in the plugin: building it from its args, and each refresh.
///
/// Refresh errors never reach the scheduling cycle: the refresher counts them by
/// [`Error::kind`], logs state changes and lets the data age out (see the crate docs).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument decodes but its value is unusable; `field` is its camelCase path.
    #[error("{field}: {message}")]
    InvalidArg {
        /// The field, e.g. `rateWindow` or `basicAuth.passwordFile`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A credentials or CA file cannot be read (the path is named, never the content).
    #[error("reading {what} {}: {source}", path.display())]
    ReadFile {
        /// `bearer token file`, `password file`, `CA file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A credentials file is empty (an empty token would be sent as "no credentials").
    #[error("{what} {} is empty", path.display())]
    EmptyFile {
        /// `bearer token file`, `password file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The HTTP client cannot be built (bad CA certificate, TLS setup).
    #[error("building the HTTP client for Prometheus: {0}")]
    HttpClient(String),
    /// No answer within the configured timeout.
    #[error("Prometheus did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The connection failed (refused, DNS, TLS handshake).
    #[error("cannot connect to Prometheus: {0}")]
    Connect(String),
    /// Prometheus answered with an HTTP error status and no API error body.
    #[error("Prometheus answered HTTP {status}: {message}")]
    HttpStatus {
        /// The status code.
        status: u16,
        /// The error chain.
        message: String,
    },
    /// Prometheus answered with an API error (`bad_data`, `execution`, `timeout`, …), e.g. a
    /// query that does not parse.
    #[error("Prometheus rejected the query: {0}")]
    Prometheus(String),
    /// The answer is not a Prometheus API response (a proxy's HTML page, truncated JSON).
    #[error("cannot decode the answer of Prometheus: {0}")]
    Decode(String),
    /// The query returned something other than an instant vector.
    #[error("the query returned a {0} where an instant vector was expected")]
    UnexpectedResultType(&'static str),
}

impl Error {
    /// A short, stable name for the `kind` label of `networktraffic_refresh_errors_total`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidArg { .. } => "invalid_arg",
            Error::ReadFile { .. } | Error::EmptyFile { .. } => "credentials",
            Error::HttpClient(_) => "client",
            Error::Timeout(_) => "timeout",
            Error::Connect(_) => "connect",
            Error::HttpStatus { .. } => "http_status",
            Error::Prometheus(_) => "prometheus",
            Error::Decode(_) => "decode",
            Error::UnexpectedResultType(_) => "result_type",
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArg {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<Error> for PluginError {
    /// Argument errors keep their field so the framework reports
    /// `profiles[i].pluginConfig[j].args.<field>`.
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArg { field, message } => PluginError::invalid_arg(field, message),
            other => PluginError::Other(Box::new(other)),
        }
    }
}

/// The error and its sources, `: `-joined: reqwest's top-level message alone ("error sending
/// request") says nothing about the cause.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
