//! The kube client the scheduler uses: kubeconfig (or in-cluster) plus a client-side rate
//! limit, since kube-rs has none (client-go's QPS/burst, from `clientConnection.qps/burst`),
//! and a response timeout on every request but watches, since kube-rs has none by default
//! either (a binding sent on a dead connection would otherwise wait forever). Outages of the
//! apiserver are logged once when they start and once when they end ([`OutageLogLayer`]);
//! kube's own per-request ERROR lines are filtered out by the binary's default log filter.

use std::{
    future::Future,
    num::NonZeroU32,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::{
    Client, Config,
    client::ClientBuilder,
    config::{KubeConfigOptions, Kubeconfig},
};
use tower::{Layer, Service};

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
    let builder = ClientBuilder::try_from(config)
        .map_err(|e| Error::Client(format!("building the kube client: {e}")))?;
    Ok(builder
        .with_layer(&InFlightLimitLayer::new(MAX_REQUESTS_IN_FLIGHT))
        .with_layer(&RequestTimeoutLayer::new(REQUEST_TIMEOUT))
        .with_layer(&OutageLogLayer::default())
        .with_layer(&RateLimitLayer::new(qps, burst))
        .build())
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

/// Requests (other than watches and followed logs) in flight at once. kube's client speaks
/// HTTP/1.1, one connection per concurrent request, and the binding cycles run concurrently:
/// without a cap a burst of bindings opens thousands of TLS connections to the apiserver (each
/// costing a handshake there and buffers here). client-go multiplexes the same requests over one
/// HTTP/2 connection, at most the server's 250 concurrent streams.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 128;

/// Caps the requests in flight (watches and followed logs exempt); the others wait for a slot
/// before they are sent (the wait does not count against [`REQUEST_TIMEOUT`]).
#[derive(Clone, Debug)]
pub struct InFlightLimitLayer {
    slots: Arc<tokio::sync::Semaphore>,
}

impl InFlightLimitLayer {
    /// At most `max` requests in flight.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(max.max(1))),
        }
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit {
            inner,
            slots: self.slots.clone(),
        }
    }
}

/// The service [`InFlightLimitLayer`] produces.
#[derive(Clone, Debug)]
pub struct InFlightLimit<S> {
    inner: S,
    slots: Arc<tokio::sync::Semaphore>,
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
        let slots = (!long_running(&req)).then(|| self.slots.clone());
        // The inner future sends nothing until it is polled.
        let fut = self.inner.call(req);
        Box::pin(async move {
            let _slot = match slots {
                Some(s) => s.acquire_owned().await.ok(),
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
