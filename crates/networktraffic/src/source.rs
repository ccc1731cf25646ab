//! [`PrometheusSource`]: runs the query once and returns a snapshot, with every failure mapped
//! to an [`Error`] whose kind the refresher counts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_http_query::Client;
use reqwest::header::AUTHORIZATION;

use crate::{
    Error,
    args::{Config, NodeMapping},
    auth::{Credentials, http_client},
    query::{self, ParseStats},
    snapshot::TrafficSnapshot,
};

/// One Prometheus endpoint and the query to run against it.
pub struct PrometheusSource {
    client: Client,
    credentials: Credentials,
    promql: String,
    mapping: NodeMapping,
    node_label: String,
    timeout: Duration,
}

impl std::fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSource")
            .field("address", &self.client.base_url().as_str())
            .field("promql", &self.promql)
            .finish_non_exhaustive()
    }
}

/// Unix seconds now (0 if the clock is before 1970).
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl PrometheusSource {
    /// A source for `config` (builds the HTTP client; does not contact Prometheus).
    ///
    /// # Errors
    /// [`Error::HttpClient`] / [`Error::ReadFile`] when the client cannot be built.
    pub fn new(config: &Config) -> Result<Self, Error> {
        let http = http_client(config)?;
        let client = Client::from(http, config.address.as_str())
            .map_err(|e| Error::invalid("prometheusAddress", crate::error::chain(&e)))?;
        Ok(Self {
            client,
            credentials: Credentials::new(config.auth.clone()),
            promql: query::build(config),
            mapping: config.node_mapping,
            node_label: config.node_label.clone(),
            timeout: config.timeout,
        })
    }

    /// The PromQL sent each refresh.
    #[must_use]
    pub fn promql(&self) -> &str {
        &self.promql
    }

    /// Runs the query, evaluated at the current second, and parses the answer.
    ///
    /// # Errors
    /// Any failure, classified: [`Error::Timeout`], [`Error::Connect`], [`Error::HttpStatus`],
    /// [`Error::Prometheus`], [`Error::Decode`], [`Error::UnexpectedResultType`], or a
    /// credentials error.
    pub async fn fetch(&self) -> Result<(TrafficSnapshot, ParseStats), Error> {
        // Whole seconds: that is what the API client takes, and the evaluation time is what
        // herd compensation compares reservation times with, so it must be our clock.
        #[allow(clippy::cast_possible_truncation)]
        let at = unix_now().floor() as i64;
        let mut q = self
            .client
            .query(&self.promql)
            .at(at)
            .timeout(i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX));
        if let Some(h) = self.credentials.header()? {
            q = q.header(AUTHORIZATION, h);
        }
        // reqwest's own timeout covers connect and the whole answer; this one is a backstop
        // for anything that would still hang (it cannot be shorter than reqwest's by design).
        let answer = tokio::time::timeout(self.timeout + Duration::from_secs(1), q.post())
            .await
            .map_err(|_| Error::Timeout(self.timeout))?
            .map_err(|e| classify(&e, self.timeout))?;
        query::parse(answer.data(), self.mapping, &self.node_label, at)
    }
}

fn classify(e: &prometheus_http_query::Error, timeout: Duration) -> Error {
    use prometheus_http_query::Error as P;
    match e {
        P::Prometheus(p) => Error::Prometheus(p.to_string()),
        P::Client(c) => match c.inner() {
            Some(r) if r.is_timeout() => Error::Timeout(timeout),
            Some(r) if r.is_connect() => Error::Connect(crate::error::chain(r)),
            Some(r) if r.is_decode() => Error::Decode(crate::error::chain(r)),
            Some(r) if r.is_status() => Error::HttpStatus {
                status: r.status().map_or(0, |s| s.as_u16()),
                message: crate::error::chain(r),
            },
            Some(r) if r.is_body() => Error::Decode(crate::error::chain(r)),
            Some(r) if r.is_request() => Error::Connect(crate::error::chain(r)),
            // No reqwest error inside: the crate failed to make sense of the answer (an HTTP
            // error without a Prometheus error body, an unexpected content type).
            _ => Error::Decode(crate::error::chain(c)),
        },
        other => Error::Decode(crate::error::chain(other)),
    }
}
