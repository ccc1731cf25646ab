//! The kube client the scheduler uses: kubeconfig (or in-cluster), over an HTTP stack of our
//! own that speaks HTTP/2 when the apiserver offers it (ALPN `h2`; kube-client 5's own stack
//! speaks HTTP/1.1 only), as client-go does: every request and watch multiplexed over one TLS
//! connection instead of one connection per request in flight. HTTP/1.1 servers and plain
//! `http://` URLs still work (ALPN falls back to `http/1.1`). On top: a client-side rate limit,
//! since kube-rs has none (client-go's QPS/burst, from `clientConnection.qps/burst`), a response
//! timeout on every request but watches, since kube-rs has none by default either (a binding sent
//! on a dead connection would otherwise wait forever), and a cap on requests in flight while no
//! HTTP/2 connection is up. Outages of the apiserver are logged once when they start and once
//! when they end ([`OutageLogLayer`]).

use std::{
    future::Future,
    num::NonZeroU32,
    path::Path,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::http::Uri;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hyper_util::{
    client::legacy::connect::{Connected, Connection, HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use kube::{
    Client, Config,
    client::{ClientBuilder, ConfigExt, retry::RetryPolicy},
    config::{KubeConfigOptions, Kubeconfig},
};
use tower::{Layer, Service, ServiceBuilder, retry::RetryLayer};

use crate::Error;

/// Builds a client from `kubeconfig` (or `$KUBECONFIG` / `~/.kube/config` / in-cluster when
/// `None`) limited to `qps` requests per second with `burst` (`qps <= 0` disables the limit).
///
/// # Errors
/// [`Error::Client`] when the kubeconfig cannot be read or the client cannot be built.
pub async fn build_client(
    kubeconfig: Option<&Path>,
    qps: f32,
    burst: u32,
) -> Result<Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| {
                Error::Client(format!("reading kubeconfig {}: {e}", path.display()))
            })?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Client(format!("loading kubeconfig {}: {e}", path.display())))?
        }
        None => Config::infer()
            .await
            .map_err(|e| Error::Client(format!("inferring a kube config: {e}")))?,
    };
    client_from_config(config, qps, burst)
}

/// Builds a rate-limited client from a loaded config.
///
/// # Errors
/// [`Error::Client`] when the TLS or HTTP stack cannot be built.
pub fn client_from_config(config: Config, qps: f32, burst: u32) -> Result<Client, Error> {
    client_with_stats(config, qps, burst).map(|(client, _)| client)
}

/// Like [`client_from_config`], and also returns the counters of the connections the client
/// opens (which protocol each negotiated), for tests and diagnostics.
///
/// # Errors
/// [`Error::Client`] when the TLS or HTTP stack cannot be built.
pub fn client_with_stats(
    config: Config,
    qps: f32,
    burst: u32,
) -> Result<(Client, Arc<ConnectionStats>), Error> {
    let stats = Arc::new(ConnectionStats::default());
    let err = |e: kube::Error| Error::Client(format!("building the kube client: {e}"));
    let hyper = hyper_client(&config, stats.clone())?;
    // kube's own layers, in kube's order (outermost first): base URI, retries of 429/503/504
    // (`Config::default_retry`), authentication, extra headers (impersonation and the like).
    // Left out: kube's per-request tracing span and ERROR line (the outage layer logs outages
    // once), and the exec-credential expiry (`Client::valid_until`), which nothing here reads.
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer().map_err(err)?)
        .layer(config.extra_headers_layer().map_err(err)?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    let client = ClientBuilder::new(service, config.default_namespace.clone())
        .with_layer(&InFlightLimitLayer::new(MAX_REQUESTS_IN_FLIGHT).unless_h2(stats.clone()))
        .with_layer(&RequestTimeoutLayer::new(REQUEST_TIMEOUT))
        .with_layer(&OutageLogLayer::default())
        .with_layer(&RateLimitLayer::new(qps, burst))
        .build();
    Ok((client, stats))
}

/// The HTTP/2 receive window of one stream: client-go's (Go's `http2` transport, 4 MiB), so a
/// large list (5000 nodes) streams without waiting for window updates every 64 KiB.
const H2_STREAM_WINDOW: u32 = 4 << 20;
/// The HTTP/2 receive window of the whole connection, shared by its streams. Smaller than
/// client-go's 1 GiB: data we have not read yet stays buffered up to this much, and every
/// stream here (watches included) is read as it arrives.
const H2_CONNECTION_WINDOW: u32 = 16 << 20;
/// How long an HTTP/2 connection may stay silent before we ping it, and how long the ping may
/// go unanswered before the connection is closed as dead: client-go's `ReadIdleTimeout` and
/// `PingTimeout`. With every request on one connection, a dead one must be found quickly.
const H2_PING_AFTER: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(15);

type Connector =
    TrackingConnector<hyper_timeout::TimeoutConnector<hyper_rustls::HttpsConnector<HttpConnector>>>;

/// hyper's pooled client over rustls (the config kube builds from the kubeconfig: CA, client
/// certificate, `insecure-skip-tls-verify`, `tls-server-name`), offering `h2` and `http/1.1`.
fn hyper_client(
    config: &Config,
    stats: Arc<ConnectionStats>,
) -> Result<hyper_util::client::legacy::Client<Connector, kube::client::Body>, Error> {
    let err = |e: &dyn std::fmt::Display| Error::Client(format!("building the kube client: {e}"));
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    // Many small requests share one connection: Nagle's algorithm would hold them back.
    http.set_nodelay(true);
    let tls = config.rustls_client_config().map_err(|e| err(&e))?;
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = name
            .clone()
            .try_into()
            .map_err(|e| err(&format!("tls-server-name {name:?}: {e}")))?;
        https = https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = https.enable_all_versions().wrap_connector(http);
    // kube's connection timeouts (connect 30 s, write 295 s by default; no read timeout).
    let mut timeouts = hyper_timeout::TimeoutConnector::new(https);
    timeouts.set_connect_timeout(config.connect_timeout);
    timeouts.set_read_timeout(config.read_timeout);
    timeouts.set_write_timeout(config.write_timeout);
    timeouts.set_reset_reader_on_write(config.reset_reader_on_write);
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_initial_stream_window_size(H2_STREAM_WINDOW)
            .http2_initial_connection_window_size(H2_CONNECTION_WINDOW)
            .http2_keep_alive_interval(H2_PING_AFTER)
            .http2_keep_alive_timeout(H2_PING_TIMEOUT)
            .http2_keep_alive_while_idle(true)
            .build(TrackingConnector {
                inner: timeouts,
                stats,
            }),
    )
}

/// Counters of the connections a client opened.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    opened: AtomicU64,
    opened_h2: AtomicU64,
    open_h2: AtomicUsize,
    /// Whether the latest connection negotiated HTTP/2.
    last_h2: AtomicBool,
}

/// What [`InFlightLimit`] knows of the apiserver's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// An HTTP/2 connection is up: requests are multiplexed, no cap.
    Multiplexed,
    /// The latest connection spoke HTTP/1.1: one connection per request in flight, capped.
    Http1,
    /// No connection yet, or the HTTP/2 one went away: one request at a time opens it.
    Unknown,
}

impl ConnectionStats {
    /// Connections opened so far (TCP, and TLS where the URL is `https`).
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Of those, the ones that negotiated HTTP/2.
    pub fn opened_h2(&self) -> u64 {
        self.opened_h2.load(Ordering::Relaxed)
    }

    /// HTTP/2 connections open now.
    pub fn open_h2(&self) -> usize {
        self.open_h2.load(Ordering::Relaxed)
    }

    fn protocol(&self) -> Protocol {
        if self.open_h2() > 0 {
            Protocol::Multiplexed
        } else if self.opened() > 0 && !self.last_h2.load(Ordering::Relaxed) {
            Protocol::Http1
        } else {
            Protocol::Unknown
        }
    }
}

/// Counts the connections its inner connector makes and the protocol each negotiated.
#[derive(Clone)]
struct TrackingConnector<C> {
    inner: C,
    stats: Arc<ConnectionStats>,
}

impl<C> Service<Uri> for TrackingConnector<C>
where
    C: Service<Uri>,
    C::Response: Connection + Send + 'static,
    C::Future: Send + 'static,
{
    type Response = Tracked<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let stats = self.stats.clone();
        Box::pin(async move {
            let io = connecting.await?;
            let h2 = io.connected().is_negotiated_h2();
            stats.last_h2.store(h2, Ordering::Relaxed);
            stats.opened.fetch_add(1, Ordering::Relaxed);
            if h2 {
                stats.opened_h2.fetch_add(1, Ordering::Relaxed);
                stats.open_h2.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(
                protocol = if h2 { "h2" } else { "http/1.1" },
                "connected to the apiserver"
            );
            Ok(Tracked { io, h2, stats })
        })
    }
}

/// A connection made by [`TrackingConnector`]; counts itself out of the open HTTP/2
/// connections when hyper drops it.
struct Tracked<T> {
    io: T,
    h2: bool,
    stats: Arc<ConnectionStats>,
}

impl<T> Drop for Tracked<T> {
    fn drop(&mut self) {
        if self.h2 {
            self.stats.open_h2.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<T: Connection> Connection for Tracked<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

/// Logs apiserver outages by their transitions instead of per request: one WARN when a request
/// first fails to reach the apiserver (connection refused or reset, no response in time, or a
/// 502/503/504 answer), one WARN when a request gets an answer again, with how long it was
/// down and how many requests failed meanwhile. What retries is the caller's business:
/// watches back off from 0.8 s to 30 s, failed bindings are requeued with the pod's backoff,
/// status updates and events are dropped, the Lease is retried every `retryPeriod`.
#[derive(Clone, Debug, Default)]
pub struct OutageLogLayer {
    state: Arc<OutageState>,
}

#[derive(Debug, Default)]
struct OutageState {
    /// Since when requests fail, and how many have; `None` while the apiserver answers.
    down: parking_lot::Mutex<Option<(std::time::Instant, u64)>>,
}

impl OutageState {
    fn failed(&self, why: &dyn std::fmt::Display) {
        let mut down = self.down.lock();
        match down.as_mut() {
            Some((_, n)) => *n += 1,
            None => {
                tracing::warn!(
                    error = %why,
                    "apiserver unreachable; watches retry with backoff (0.8 s to 30 s), failed \
                     bindings are requeued with backoff"
                );
                *down = Some((std::time::Instant::now(), 1));
            }
        }
    }

    fn answered(&self) {
        let mut down = self.down.lock();
        if let Some((since, failed_requests)) = down.take() {
            tracing::warn!(down_for = ?since.elapsed(), failed_requests, "apiserver reachable again");
        }
    }
}

impl<S> Layer<S> for OutageLogLayer {
    type Service = OutageLog<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OutageLog {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service [`OutageLogLayer`] produces.
#[derive(Clone, Debug)]
pub struct OutageLog<S> {
    inner: S,
    state: Arc<OutageState>,
}

impl<S, Req, B> Service<Req> for OutageLog<S>
where
    S: Service<Req, Response = axum::http::Response<B>>,
    S::Error: std::fmt::Display,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let fut = self.inner.call(req);
        let state = self.state.clone();
        Box::pin(async move {
            let res = fut.await;
            match &res {
                Err(e) => state.failed(e),
                Ok(r) if matches!(r.status().as_u16(), 502..=504) => state.failed(&r.status()),
                Ok(_) => state.answered(),
            }
            res
        })
    }
}

/// How long a request (other than a watch) may wait for its response: kube-apiserver's own
/// `--request-timeout` default. A healthy apiserver answers or times the request out itself
/// by then, so only a request on a dead connection (a network partition, an apiserver frozen
/// mid-request) reaches it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Fails a request whose response has not arrived within a timeout. Watches (`watch=true`) and
/// followed logs are exempt: they are meant to stay open (kube's watcher has its own idle
/// timeout).
#[derive(Clone, Copy, Debug)]
pub struct RequestTimeoutLayer {
    timeout: Duration,
}

impl RequestTimeoutLayer {
    /// A limit of `timeout` per request.
    #[must_use]
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service [`RequestTimeoutLayer`] produces.
#[derive(Clone, Debug)]
pub struct RequestTimeout<S> {
    inner: S,
    timeout: Duration,
}

/// The error of a request that timed out.
#[derive(Debug, thiserror::Error)]
#[error("no response from the apiserver within {0:?}")]
pub struct RequestTimedOut(pub Duration);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whether a request is meant to stay open (a watch, a followed log).
fn long_running<B>(req: &axum::http::Request<B>) -> bool {
    req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "watch=true" | "watch=1" | "follow=true" | "follow=1"))
    })
}

impl<S, B> Service<axum::http::Request<B>> for RequestTimeout<S>
where
    S: Service<axum::http::Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let limit = (!long_running(&req)).then_some(self.timeout);
        let fut = self.inner.call(req);
        Box::pin(async move {
            match limit {
                None => fut.await.map_err(Into::into),
                Some(t) => match tokio::time::timeout(t, fut).await {
                    Ok(r) => r.map_err(Into::into),
                    Err(_) => Err(Box::new(RequestTimedOut(t)) as BoxError),
                },
            }
        })
    }
}

/// Requests (other than watches and followed logs) in flight at once while no HTTP/2
/// connection to the apiserver is up. Over HTTP/1.1 (a server without `h2`, a plain `http://`
/// URL) each concurrent request needs its own connection, and the binding cycles run
/// concurrently: without a cap a burst of bindings opens thousands of TLS connections (each
/// costing a handshake there and buffers here). Over HTTP/2 the cap is lifted: requests are
/// multiplexed over one connection, at most as many at once as the apiserver allows streams
/// per connection (`--http2-max-streams-per-connection`, 1000 by default), the rest waiting in
/// the client for a stream, as client-go's do. While the protocol is not known — no connection
/// yet, or the HTTP/2 one was lost — requests go one at a time until a connection is up:
/// hyper's pool cannot tell before ALPN that the connection it is making will be shared, so
/// each request that finds none would start its own handshake (78 of them for a cold burst of
/// 256 requests against the test apiserver, all but one closed right after).
pub const MAX_REQUESTS_IN_FLIGHT: usize = 128;

/// Caps the requests in flight (watches and followed logs exempt); the others wait for a slot
/// before they are sent. In [`client_from_config`]'s stack the wait counts against
/// [`REQUEST_TIMEOUT`] (the timeout layer is outside this one).
#[derive(Clone, Debug)]
pub struct InFlightLimitLayer {
    slots: Arc<tokio::sync::Semaphore>,
    /// One permit: the request that opens the first connection while the protocol is unknown.
    probe: Arc<tokio::sync::Semaphore>,
    h2: Option<Arc<ConnectionStats>>,
}

impl InFlightLimitLayer {
    /// At most `max` requests in flight.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(max.max(1))),
            probe: Arc::new(tokio::sync::Semaphore::new(1)),
            h2: None,
        }
    }

    /// No cap while `stats` counts an open HTTP/2 connection, and one request at a time while
    /// no connection says which protocol the apiserver speaks.
    #[must_use]
    pub fn unless_h2(self, stats: Arc<ConnectionStats>) -> Self {
        Self {
            h2: Some(stats),
            ..self
        }
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit {
            inner,
            slots: self.slots.clone(),
            probe: self.probe.clone(),
            h2: self.h2.clone(),
        }
    }
}

/// The service [`InFlightLimitLayer`] produces.
#[derive(Clone, Debug)]
pub struct InFlightLimit<S> {
    inner: S,
    slots: Arc<tokio::sync::Semaphore>,
    probe: Arc<tokio::sync::Semaphore>,
    h2: Option<Arc<ConnectionStats>>,
}

/// Waits until a request may be sent; the permit (if any) is held until its response.
async fn admit(
    slots: Arc<tokio::sync::Semaphore>,
    probe: Arc<tokio::sync::Semaphore>,
    stats: Option<Arc<ConnectionStats>>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let Some(stats) = stats else {
        return slots.acquire_owned().await.ok();
    };
    loop {
        match stats.protocol() {
            Protocol::Multiplexed => return None,
            Protocol::Http1 => return slots.acquire_owned().await.ok(),
            Protocol::Unknown => {
                let permit = probe.clone().acquire_owned().await.ok()?;
                // The previous probe's connection may have told us while we waited.
                if stats.protocol() == Protocol::Unknown {
                    return Some(permit);
                }
            }
        }
    }
}

impl<S, B> Service<axum::http::Request<B>> for InFlightLimit<S>
where
    S: Service<axum::http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let limits = (!long_running(&req))
            .then(|| (self.slots.clone(), self.probe.clone(), self.h2.clone()));
        // The inner future sends nothing until it is polled.
        let fut = self.inner.call(req);
        Box::pin(async move {
            let _permit = match limits {
                Some((slots, probe, stats)) => admit(slots, probe, stats).await,
                None => None,
            };
            fut.await
        })
    }
}

/// A token-bucket limit on requests (GCRA from `governor`): `qps` per second, `burst` at once.
/// Long-running watches count once, when they start.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

impl RateLimitLayer {
    /// A limit of `qps` requests per second with `burst`; no limit when `qps <= 0`.
    #[must_use]
    pub fn new(qps: f32, burst: u32) -> Self {
        if !qps.is_finite() || qps <= 0.0 {
            return Self { limiter: None };
        }
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let period = std::time::Duration::from_secs_f64(1.0 / f64::from(qps));
        let limiter =
            Quota::with_period(period).map(|q| Arc::new(RateLimiter::direct(q.allow_burst(burst))));
        Self { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            waiting: None,
            permitted: false,
        }
    }
}

type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The service [`RateLimitLayer`] produces: `poll_ready` waits for a token.
pub struct RateLimit<S> {
    inner: S,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    waiting: Option<Wait>,
    permitted: bool,
}

impl<S, R> Service<R> for RateLimit<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(limiter) = &self.limiter
            && !self.permitted
        {
            let wait = self.waiting.get_or_insert_with(|| {
                let l = limiter.clone();
                Box::pin(async move { l.until_ready().await })
            });
            match wait.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    self.waiting = None;
                    self.permitted = true;
                }
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.permitted = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, time::Instant};

    use tower::{ServiceExt, service_fn};

    use super::*;

    #[tokio::test]
    async fn limits_to_qps_after_burst() {
        let svc = service_fn(|(): ()| async { Ok::<_, Infallible>(()) });
        let mut svc = RateLimitLayer::new(100.0, 5).layer(svc);
        let start = Instant::now();
        for _ in 0..25 {
            svc.ready().await.unwrap().call(()).await.unwrap();
        }
        // 5 at once, then 20 at 100/s: about 200 ms.
        let took = start.elapsed();
        assert!(took.as_millis() >= 150, "{took:?}");
        assert!(took.as_millis() < 2000, "{took:?}");
    }

    #[tokio::test]
    async fn in_flight_requests_are_capped_but_watches_are_not() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let (n, m) = (now.clone(), max.clone());
        let svc = service_fn(move |req: axum::http::Request<()>| {
            let (n, m) = (n.clone(), m.clone());
            async move {
                if !long_running(&req) {
                    let c = n.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(c, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    n.fetch_sub(1, Ordering::SeqCst);
                } else {
                    std::future::pending::<()>().await;
                }
                Ok::<_, Infallible>(())
            }
        });
        let svc = InFlightLimitLayer::new(2).layer(svc);
        let req = |uri: &str| axum::http::Request::get(uri).body(()).unwrap();
        // Watches hold no slot: three of them stay open while the bindings go through.
        let watches: Vec<_> = (0..3)
            .map(|_| tokio::spawn(svc.clone().oneshot(req("/api/v1/pods?watch=true"))))
            .collect();
        let calls = (0..10).map(|_| {
            svc.clone()
                .oneshot(req("/api/v1/namespaces/a/pods/p/binding"))
        });
        futures::future::join_all(calls).await;
        assert_eq!(max.load(Ordering::SeqCst), 2);
        assert_eq!(now.load(Ordering::SeqCst), 0);
        for w in watches {
            assert!(!w.is_finished());
            w.abort();
        }
    }

    #[tokio::test]
    async fn one_request_opens_the_connection_then_h2_lifts_the_cap() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let stats = Arc::new(ConnectionStats::default());
        let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (s, n, m) = (stats.clone(), now.clone(), max.clone());
        let svc = service_fn(move |_: axum::http::Request<()>| {
            let (s, n, m) = (s.clone(), n.clone(), m.clone());
            async move {
                let c = n.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(c, Ordering::SeqCst);
                if s.opened() == 0 {
                    // The first request's connection: a slow handshake that negotiates h2.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    s.last_h2.store(true, Ordering::Relaxed);
                    s.opened.fetch_add(1, Ordering::Relaxed);
                    s.open_h2.fetch_add(1, Ordering::Relaxed);
                    assert_eq!(m.load(Ordering::SeqCst), 1, "others waited for the first");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Infallible>(())
            }
        });
        let svc = InFlightLimitLayer::new(2).unless_h2(stats).layer(svc);
        let req = || {
            axum::http::Request::get("/api/v1/namespaces/a")
                .body(())
                .unwrap()
        };
        let calls = (0..10).map(|_| svc.clone().oneshot(req()));
        futures::future::join_all(calls).await;
        // After the first, the other nine ran at once on the shared connection.
        assert_eq!(max.load(Ordering::SeqCst), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_time_out_but_watches_do_not() {
        let never = service_fn(|_: axum::http::Request<()>| {
            std::future::pending::<Result<(), Infallible>>()
        });
        let mut svc = RequestTimeoutLayer::new(Duration::from_secs(60)).layer(never);
        let req = |uri: &str| axum::http::Request::get(uri).body(()).unwrap();
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(req("/api/v1/namespaces/a/pods/p/binding"))
            .await
            .unwrap_err();
        assert!(err.is::<RequestTimedOut>(), "{err}");
        let watch = svc
            .ready()
            .await
            .unwrap()
            .call(req("/api/v1/pods?watch=true&timeoutSeconds=290"));
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), watch)
                .await
                .is_err(),
            "a watch must not be timed out"
        );
    }

    #[tokio::test]
    async fn outages_are_counted_by_transition() {
        let next = Arc::new(parking_lot::Mutex::new(Ok::<u16, &'static str>(200)));
        let n = next.clone();
        let svc = service_fn(move |(): ()| {
            let r = *n.lock();
            async move {
                r.map(|code| {
                    axum::http::Response::builder()
                        .status(code)
                        .body(())
                        .unwrap()
                })
            }
        });
        let layer = OutageLogLayer::default();
        let mut svc = layer.layer(svc);
        let mut call = async |r| {
            *next.lock() = r;
            let _ = svc.ready().await.unwrap().call(()).await;
        };
        call(Ok(200)).await;
        assert!(layer.state.down.lock().is_none());
        call(Err("connection refused")).await;
        call(Ok(503)).await;
        call(Err("connection refused")).await;
        assert_eq!(layer.state.down.lock().map(|(_, n)| n), Some(3));
        call(Ok(404)).await; // an answer, even a negative one, means it is back
        assert!(layer.state.down.lock().is_none());
    }

    /// A plain `http://` server (HTTP/1.1 only, like a proxy without TLS): the client falls back
    /// to HTTP/1.1, one connection per request in flight.
    #[tokio::test]
    async fn plain_http_falls_back_to_http1() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/api/v1/namespaces/default",
            axum::routing::get(|| async {
                (
                    [("content-type", "application/json")],
                    r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default"}}"#,
                )
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = Config::new(format!("http://{addr}").parse().unwrap());
        let (client, stats) = client_with_stats(config, 0.0, 0).unwrap();
        let res = client
            .send(
                axum::http::Request::get("/api/v1/namespaces/default")
                    .body(Vec::new())
                    .unwrap()
                    .map(Into::into),
            )
            .await
            .unwrap();
        assert_eq!(res.version(), axum::http::Version::HTTP_11);
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
        let gets = (0..20).map(|_| api.get("default"));
        for got in futures::future::join_all(gets).await {
            assert_eq!(got.unwrap().metadata.name.as_deref(), Some("default"));
        }
        assert_eq!(stats.opened_h2(), 0);
        assert!((1..=21).contains(&stats.opened()), "{}", stats.opened());
    }

    #[tokio::test]
    async fn zero_qps_is_unlimited() {
        let svc = service_fn(|(): ()| async { Ok::<_, Infallible>(()) });
        let mut svc = RateLimitLayer::new(0.0, 0).layer(svc);
        let start = Instant::now();
        for _ in 0..1000 {
            svc.ready().await.unwrap().call(()).await.unwrap();
        }
        assert!(start.elapsed().as_millis() < 500);
    }
}
