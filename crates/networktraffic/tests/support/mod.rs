//! Test support: a real Prometheus process, fake node-exporters it scrapes, and small HTTP
//! servers standing in for an auth proxy or a broken Prometheus. Everything listens on
//! loopback and is stopped on drop.

#![allow(dead_code, missing_docs)]

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use ksched_networktraffic::{NetworkTraffic, NetworkTrafficArgs};
use parking_lot::Mutex;

/// A unique scratch directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "ksched-nt-{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("creating a temp dir");
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).expect("writing a temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Logs of the code under test, shown for failing tests (`RUST_LOG` to change the level).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("ksched_networktraffic=debug")
            }),
        )
        .with_test_writer()
        .try_init();
    ksched_networktraffic::auth::ensure_crypto_provider();
}

/// One network device of a fake node: counters that grow at fixed rates.
#[derive(Clone, Debug)]
pub struct Device {
    pub name: String,
    pub rx_per_sec: f64,
    pub tx_per_sec: f64,
    pub speed_bytes: Option<f64>,
}

pub fn dev(name: &str, rx_per_sec: f64) -> Device {
    Device {
        name: name.into(),
        rx_per_sec,
        tx_per_sec: 0.0,
        speed_bytes: None,
    }
}

/// What a fake node-exporter serves.
#[derive(Clone, Debug, Default)]
pub struct FakeNode {
    /// `node_uname_info{nodename=…}`; `None` leaves the metric out.
    pub nodename: Option<String>,
    /// Extra labels on every counter (e.g. `node="n1"`, as a relabelling would add).
    pub counter_labels: Vec<(String, String)>,
    pub devices: Vec<Device>,
    /// Raw exposition lines appended as they are.
    pub extra: String,
    /// The loopback address to listen on (127.0.0.1 unless set).
    pub ip: Option<Ipv4Addr>,
}

impl FakeNode {
    pub fn named(nodename: &str, devices: Vec<Device>) -> Self {
        Self {
            nodename: Some(nodename.into()),
            devices,
            ..Self::default()
        }
    }
}

struct ExporterState {
    node: FakeNode,
    started: Instant,
    alive: AtomicBool,
}

/// A fake node-exporter on a loopback port of its own.
pub struct Exporter {
    pub addr: SocketAddr,
    state: Arc<ExporterState>,
    task: tokio::task::JoinHandle<()>,
}

async fn metrics(State(s): State<Arc<ExporterState>>) -> Response {
    if !s.alive.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopped").into_response();
    }
    let t = s.started.elapsed().as_secs_f64();
    let mut out = String::new();
    let extra_labels: String = s
        .node
        .counter_labels
        .iter()
        .map(|(k, v)| format!(",{k}=\"{v}\""))
        .collect();
    for (metric, pick) in [
        (
            "node_network_receive_bytes_total",
            (|d: &Device| d.rx_per_sec) as fn(&Device) -> f64,
        ),
        ("node_network_transmit_bytes_total", |d: &Device| {
            d.tx_per_sec
        }),
    ] {
        let _ = writeln!(out, "# TYPE {metric} counter");
        for d in &s.node.devices {
            // Counters start at a large value, as on a node that has been up for a while.
            let _ = writeln!(
                out,
                "{metric}{{device=\"{}\"{extra_labels}}} {}",
                d.name,
                1e9 + pick(d) * t
            );
        }
    }
    let _ = writeln!(out, "# TYPE node_network_speed_bytes gauge");
    for d in &s.node.devices {
        if let Some(speed) = d.speed_bytes {
            let _ = writeln!(
                out,
                "node_network_speed_bytes{{device=\"{}\"{extra_labels}}} {speed}",
                d.name
            );
        }
    }
    if let Some(n) = &s.node.nodename {
        let _ = writeln!(out, "# TYPE node_uname_info gauge");
        let _ = writeln!(
            out,
            "node_uname_info{{nodename=\"{n}\",sysname=\"Linux\"}} 1"
        );
    }
    out.push_str(&s.node.extra);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

impl Exporter {
    pub async fn start(node: FakeNode) -> Self {
        let ip = node.ip.unwrap_or(Ipv4Addr::LOCALHOST);
        let listener = tokio::net::TcpListener::bind((IpAddr::V4(ip), 0))
            .await
            .expect("binding the exporter");
        let addr = listener.local_addr().expect("exporter address");
        let state = Arc::new(ExporterState {
            node,
            started: Instant::now(),
            alive: AtomicBool::new(true),
        });
        let app = Router::new()
            .route("/metrics", get(metrics))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, task }
    }

    /// Scrapes fail from now on (503), as when node-exporter dies.
    pub fn stop(&self) {
        self.state.alive.store(false, Ordering::SeqCst);
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Prometheus binary: `prometheus` on PATH, else `/usr/bin/prometheus`.
pub fn prometheus_binary() -> PathBuf {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("prometheus");
            if p.is_file() {
                return p;
            }
        }
    }
    let p = PathBuf::from("/usr/bin/prometheus");
    assert!(
        p.is_file(),
        "prometheus not found on PATH or at /usr/bin/prometheus: run scripts/install-prometheus.sh"
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A real Prometheus scraping the given targets every second. Killed on drop.
pub struct Prometheus {
    pub url: String,
    child: Child,
    dir: TempDir,
}

#[derive(Default)]
pub struct PrometheusOptions {
    /// Contents of `--web.config.file` (basic auth users, TLS).
    pub web_config: Option<String>,
}

impl Prometheus {
    pub async fn start(targets: &[SocketAddr]) -> Self {
        Self::start_with(targets, PrometheusOptions::default()).await
    }

    pub async fn start_with(targets: &[SocketAddr], options: PrometheusOptions) -> Self {
        let mut last_err = String::new();
        // The port is picked, released, then taken by Prometheus: retry if someone else won it.
        for _ in 0..3 {
            match Self::try_start(targets, &options).await {
                Ok(p) => return p,
                Err(e) => last_err = e,
            }
        }
        panic!("Prometheus did not start: {last_err}");
    }

    async fn try_start(
        targets: &[SocketAddr],
        options: &PrometheusOptions,
    ) -> Result<Self, String> {
        let dir = TempDir::new("prometheus");
        let targets: Vec<String> = targets.iter().map(|a| format!("'{a}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.file("prometheus.yml", &config);
        let port = free_port();
        let log =
            std::fs::File::create(dir.path().join("prometheus.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(prometheus_binary());
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        if let Some(web) = &options.web_config {
            let p = dir.file("web.yml", web);
            cmd.arg(format!("--web.config.file={}", p.display()));
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawning prometheus: {e}"))?;
        let mut p = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        p.wait_ready(options.web_config.is_some()).await?;
        Ok(p)
    }

    async fn wait_ready(&mut self, auth: bool) -> Result<(), String> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "prometheus exited with {status}: {}",
                    self.log_tail()
                ));
            }
            if let Ok(r) = client.get(format!("{}/-/ready", self.url)).send().await {
                // With auth configured, a 401 proves the server is up.
                if r.status().is_success() || (auth && r.status() == StatusCode::UNAUTHORIZED) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "prometheus not ready after 30 s: {}",
            self.log_tail()
        ))
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        s.lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills the process now (an outage).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Args with the test's Prometheus, a 5 s rate window and a 1 s refresh.
pub fn args(url: &str, extra: serde_json::Value) -> NetworkTrafficArgs {
    let mut v = serde_json::json!({
        "prometheusAddress": url,
        "rateWindow": "5s",
        "refreshInterval": "1s",
        "maxStaleness": "10s",
        "timeout": "2s",
    });
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    ksched_framework::PluginArgs::from_value(v)
        .decode()
        .expect("test args decode")
}

/// Refreshes until `ok` holds for the plugin's data, or fails after `timeout`.
pub async fn wait_for(
    plugin: &NetworkTraffic,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&NetworkTraffic) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match plugin.refresh_now().await {
            Ok(s) => format!("{s:?}"),
            Err(e) => e.to_string(),
        };
        if ok(plugin) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last refresh: {last}; data: {:?}",
            plugin.traffic()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A reverse proxy to `upstream` that lets a request through only with
/// `Authorization: Bearer <token>` (Prometheus itself cannot check bearer tokens).
pub struct BearerProxy {
    pub url: String,
    token: Arc<Mutex<String>>,
    seen_unauthorized: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    token: Arc<Mutex<String>>,
    client: reqwest::Client,
    unauthorized: Arc<AtomicU64>,
}

async fn proxy(State(s): State<ProxyState>, req: Request) -> Response {
    let want = format!("Bearer {}", s.token.lock());
    let got = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if got != want {
        s.unauthorized.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let method = req.method().clone();
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let Ok(body) = axum::body::to_bytes(req.into_body(), 1 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut up = s
        .client
        .request(method, format!("{}{path}", s.upstream))
        .body(body);
    if let Some(ct) = content_type {
        up = up.header(header::CONTENT_TYPE, ct);
    }
    match up.send().await {
        Ok(r) => {
            let status = r.status();
            let mut headers = HeaderMap::new();
            if let Some(ct) = r.headers().get(header::CONTENT_TYPE) {
                headers.insert(header::CONTENT_TYPE, ct.clone());
            }
            let bytes = r.bytes().await.unwrap_or_default();
            (status, headers, Body::from(bytes)).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

impl BearerProxy {
    pub async fn start(upstream: &str, token: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let token = Arc::new(Mutex::new(token.to_owned()));
        let unauthorized = Arc::new(AtomicU64::new(0));
        let state = ProxyState {
            upstream: upstream.to_owned(),
            token: token.clone(),
            client: reqwest::Client::new(),
            unauthorized: unauthorized.clone(),
        };
        let app = Router::new().fallback(proxy).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            token,
            seen_unauthorized: unauthorized,
            task,
        }
    }

    /// Accepts only `token` from now on (a rotation).
    pub fn set_token(&self, token: &str) {
        *self.token.lock() = token.to_owned();
    }

    pub fn unauthorized_requests(&self) -> u64 {
        self.seen_unauthorized.load(Ordering::SeqCst)
    }
}

impl Drop for BearerProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server that answers every request the same way after `delay` (a slow or broken
/// Prometheus).
pub struct CannedServer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl CannedServer {
    pub async fn start(
        status: u16,
        content_type: &'static str,
        body: &'static str,
        delay: Duration,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding");
        let addr = listener.local_addr().expect("address");
        let app = Router::new().fallback(move || async move {
            tokio::time::sleep(delay).await;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            task,
        }
    }
}

impl Drop for CannedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
