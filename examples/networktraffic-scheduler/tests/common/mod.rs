//! Running the `networktraffic-scheduler` binary against the test control plane: config files,
//! child processes (killed on drop, and babysat by `ksched-testenv exec` so they die with the
//! test process even if it is SIGKILLed), pod bursts, and a watch that records every binding.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Event, Pod, ServiceAccount};
use ksched_testenv::kube::Client;
use ksched_testenv::kube::api::{Api, ListParams, PostParams};
use ksched_testenv::kube::runtime::{WatchStreamExt, watcher};
use ksched_testenv::{ControlPlane, NodeSpec, TestNamespace, TestPod, create_nodes};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_networktraffic-scheduler");

/// A directory for one test's files (configs, logs), kept when the test fails or
/// `KSCHED_E2E_KEEP` is set.
pub struct Scratch(PathBuf);

impl Scratch {
    /// `$TMPDIR/ksched-e2e-<name>-<pid>`, emptied first.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ksched-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A path inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes a file and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("KSCHED_E2E_KEEP").is_some() {
            eprintln!("kept {} (configs and scheduler logs)", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// What a scheduling test starts from.
pub struct Setup {
    /// The shared control plane of this test binary.
    pub cp: &'static ControlPlane,
    /// A fresh namespace.
    pub ns: TestNamespace,
    /// An admin client.
    pub client: Client,
    /// A unique profile name (`schedulerName`).
    pub name: String,
    /// Files of this test.
    pub scratch: Scratch,
}

/// Namespace `prefix-…`, profile `ksched-prefix-…`, and `nodes` roomy nodes (32 CPU, 64 Gi,
/// 110 pods) named after the namespace.
pub async fn setup(prefix: &str, nodes: usize) -> Setup {
    let cp = ControlPlane::shared().await.unwrap();
    let ns = cp.namespace(prefix).await.unwrap();
    let client = cp.client().await.unwrap();
    let name = cp.unique_name(&format!("ksched-{prefix}"));
    let spec = NodeSpec::new()
        .name_prefix(ns.name())
        .cpu("32")
        .memory("64Gi")
        .pods(110);
    create_nodes(&client, nodes, &spec).await.unwrap();
    Setup {
        cp,
        ns,
        client,
        name,
        scratch: Scratch::new(prefix),
    }
}

/// The metric series counting successful scheduling attempts of `profile`.
pub fn scheduled_series(profile: &str) -> String {
    format!("scheduler_schedule_attempts_total{{result=\"scheduled\",profile=\"{profile}\"}}")
}

/// Leader election in a test config: a short lease in the test's namespace.
pub struct Lease<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

/// A KubeSchedulerConfiguration for one test: the harness kubeconfig, QPS/burst 5000, one
/// profile `scheduler_name`, leader election off or on with a 4 s lease (renew deadline 3 s,
/// retry 1 s).
pub fn config_yaml(kubeconfig: &Path, scheduler_name: &str, lease: Option<Lease<'_>>) -> String {
    let election = match lease {
        None => "leaderElection:\n  leaderElect: false\n".to_owned(),
        Some(l) => format!(
            "leaderElection:\n  leaderElect: true\n  leaseDuration: 4s\n  renewDeadline: 3s\n  retryPeriod: 1s\n  resourceNamespace: {}\n  resourceName: {}\n",
            l.namespace, l.name
        ),
    };
    format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: {}\n  qps: 5000\n  burst: 5000\n{election}profiles:\n- schedulerName: {scheduler_name}\n",
        kubeconfig.display()
    )
}

/// A free loopback address for the scheduler's HTTP endpoints.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub use ksched_testenv::http_get;

/// Sends a signal with kill(1) (no unsafe code in tests).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// The scheduler binary, run under `ksched-testenv exec --watch-stdin` (it dies with this test
/// process, even a SIGKILLed one). Killed on drop.
pub struct Scheduler {
    /// The `ksched-testenv exec` babysitter.
    exec: Child,
    /// PID of networktraffic-scheduler itself.
    pub pid: u32,
    /// Its `/healthz`, `/readyz`, `/metrics` address.
    pub http: SocketAddr,
    /// Its stdout + stderr.
    pub log: PathBuf,
    status: Option<ExitStatus>,
}

impl Scheduler {
    /// Starts the binary with `--config config --bind-address <free port>` plus `extra` args and
    /// `env`; its output goes to `log`.
    pub fn spawn(
        cp: &ControlPlane,
        config: &Path,
        log: PathBuf,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let http = free_addr();
        let exec_log = File::create(log.with_extension("exec.log")).unwrap();
        let mut cmd = Command::new(cp.bin_dir().join("ksched-testenv"));
        cmd.arg("exec")
            .arg(format!("--log={}", log.display()))
            .arg("--watch-stdin")
            .arg("--stop-timeout=5s")
            .arg("--")
            .arg(BIN)
            .arg(format!("--config={}", config.display()))
            .arg(format!("--bind-address={http}"))
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::from(exec_log.try_clone().unwrap()))
            .stderr(Stdio::from(exec_log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let exec = cmd.spawn().expect("spawn ksched-testenv exec");
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(pid) = ksched_testenv::program_pid(exec.id()) {
                break pid;
            }
            assert!(Instant::now() < deadline, "the scheduler did not start");
            std::thread::sleep(Duration::from_millis(10));
        };
        Scheduler {
            exec,
            pid,
            http,
            log,
            status: None,
        }
    }

    /// Everything it has printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of its output.
    pub fn tail(&self, n: usize) -> String {
        let out = self.output();
        let lines: Vec<&str> = out.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Its exit status if it has exited (the babysitter passes the exit code on).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.exec.try_wait().unwrap();
        }
        self.status
    }

    /// Waits until `/readyz` answers 200 (informers synced).
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if http_get(self.http, "/readyz").await.0 == 200 {
                return;
            }
            if let Some(status) = self.try_status() {
                panic!(
                    "scheduler exited ({status}) before it was ready:\n{}",
                    self.tail(40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "scheduler not ready within {timeout:?}:\n{}",
                self.tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for it to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "scheduler still running after {timeout:?}:\n{}",
                self.tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and wait until it is gone.
    pub async fn kill9(&mut self) {
        signal(self.pid, "KILL");
        self.wait_exit(Duration::from_secs(10)).await;
    }

    /// SIGTERM (it should finish in-flight bindings and exit 0).
    pub fn sigterm(&self) {
        signal(self.pid, "TERM");
    }

    /// The value of one sample (`name{labels}`) on `/metrics`, 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = http_get(self.http, "/metrics").await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.trim().split(' ').next()?.parse().ok())
            })
            .unwrap_or(0.0)
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            signal(self.pid, "KILL");
            let _ = self.exec.kill();
            let _ = self.exec.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ---\n{}\n---",
                self.log.display(),
                self.tail(30)
            );
        }
    }
}

/// Creates pods `{prefix}{i}` for `i` in `range` with `concurrency` requests in flight. Each
/// create is retried until it succeeds (the apiserver may be restarting); `409 AlreadyExists`
/// counts as success (a create that went through before a connection was cut).
pub async fn create_pods(
    ns: &TestNamespace,
    scheduler_name: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
    concurrency: usize,
) {
    futures::stream::iter(range)
        .map(|i| async move {
            let pod = TestPod::new(format!("{prefix}{i}"))
                .cpu("10m")
                .scheduler_name(scheduler_name);
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                match ns.create_pod(pod.clone()).await {
                    Ok(_) => return,
                    Err(e) if e.status_code() == Some(409) => return,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "creating {}: {e}", pod.name());
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
}

#[derive(Default)]
struct Bindings {
    /// pod name -> node it was first seen bound to.
    node: HashMap<String, String>,
    /// "pod: a -> b" for every bound pod whose node changed (must stay empty).
    changes: Vec<String>,
    /// pod uid -> name, to notice a pod replaced under the same name.
    uids: HashMap<String, String>,
}

/// Watches the pods of a namespace (across apiserver restarts) and records each binding.
pub struct BindingWatch {
    state: Arc<Mutex<Bindings>>,
    task: tokio::task::JoinHandle<()>,
}

impl BindingWatch {
    /// Starts watching `ns`.
    pub fn start(ns: &TestNamespace) -> Self {
        let state = Arc::new(Mutex::new(Bindings::default()));
        let pods = ns.pods();
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                let stream = watcher(pods, watcher::Config::default())
                    .default_backoff()
                    .applied_objects();
                futures::pin_mut!(stream);
                while let Some(item) = stream.next().await {
                    let Ok(pod) = item else { continue };
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                        continue;
                    };
                    let mut s = state.lock().unwrap();
                    if let Some(uid) = pod.metadata.uid.clone() {
                        s.uids.insert(uid, name.clone());
                    }
                    match s.node.get(&name) {
                        Some(first) if *first != node => {
                            let change = format!("{name}: {first} -> {node}");
                            s.changes.push(change);
                        }
                        Some(_) => {}
                        None => {
                            s.node.insert(name, node);
                        }
                    }
                }
            }
        });
        BindingWatch { state, task }
    }

    /// How many pods have been seen bound.
    pub fn bound(&self) -> usize {
        self.state.lock().unwrap().node.len()
    }

    /// Bound pods whose node changed afterwards (must be empty).
    pub fn node_changes(&self) -> Vec<String> {
        self.state.lock().unwrap().changes.clone()
    }

    /// pod name -> node.
    pub fn nodes(&self) -> HashMap<String, String> {
        self.state.lock().unwrap().node.clone()
    }

    /// Waits until at least `n` pods are bound.
    pub async fn wait_bound(&self, n: usize, timeout: Duration) -> Result<Duration, usize> {
        let start = Instant::now();
        loop {
            let bound = self.bound();
            if bound >= n {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                return Err(bound);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for BindingWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Lists the namespace's pods (retrying while the apiserver is unavailable).
pub async fn list_pods(ns: &TestNamespace) -> Vec<Pod> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ns.pods().list(&ListParams::default()).await {
            Ok(l) => return l.items,
            Err(e) => {
                assert!(Instant::now() < deadline, "listing pods: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Events of the namespace by reason, e.g. `events["Scheduled"]`.
pub async fn events_by_reason(ns: &TestNamespace) -> BTreeMap<String, Vec<Event>> {
    let events: Api<Event> = ns.api();
    let mut by_reason: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    let list = events
        .list(&ListParams::default())
        .await
        .expect("list events");
    for e in list.items {
        by_reason
            .entry(e.reason.clone().unwrap_or_default())
            .or_default()
            .push(e);
    }
    by_reason
}

/// The pods named in `Scheduled` events, with how often each was reported.
pub fn scheduled_counts(events: &BTreeMap<String, Vec<Event>>) -> HashMap<String, i32> {
    let mut counts = HashMap::new();
    for e in events.get("Scheduled").into_iter().flatten() {
        let pod = e.involved_object.name.clone().unwrap_or_default();
        let n = e
            .series
            .as_ref()
            .and_then(|s| s.count)
            .or(e.count)
            .unwrap_or(1)
            .max(1);
        *counts.entry(pod).or_insert(0) += n;
    }
    counts
}

/// Asserts that every pod of the namespace is bound, that no bound pod ever changed node, that
/// no pod was reported `Scheduled` twice and that no `FailedScheduling` mentions a binding
/// conflict. Returns the events by reason.
pub async fn assert_each_bound_once(
    ns: &TestNamespace,
    watch: &BindingWatch,
    expected: usize,
) -> BTreeMap<String, Vec<Event>> {
    let pods = list_pods(ns).await;
    assert_eq!(pods.len(), expected, "pods in the namespace");
    let unbound: Vec<String> = pods
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none())
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert!(unbound.is_empty(), "unbound pods: {unbound:?}");
    // The watch saw the same node as the final state, and no node ever changed.
    let nodes = watch.nodes();
    for p in &pods {
        let name = p.metadata.name.as_deref().unwrap_or_default();
        let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if let Some(seen) = nodes.get(name) {
            assert_eq!(Some(seen.as_str()), node, "{name} moved");
        }
    }
    assert_eq!(
        watch.node_changes(),
        Vec::<String>::new(),
        "bound pods changed node"
    );
    let events = events_by_reason(ns).await;
    let twice: Vec<(String, i32)> = scheduled_counts(&events)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "pods reported Scheduled more than once: {twice:?}"
    );
    let conflicts: Vec<String> = events
        .get("FailedScheduling")
        .into_iter()
        .flatten()
        .filter_map(|e| e.message.clone())
        .filter(|m| m.contains("already assigned") || m.contains("onflict") || m.contains("409"))
        .collect();
    assert!(conflicts.is_empty(), "binding conflicts: {conflicts:?}");
    events
}

/// Names pods that are still unbound (diagnostics).
pub async fn unbound_pods(ns: &TestNamespace) -> Vec<String> {
    list_pods(ns)
        .await
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none())
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// Waits until every pod of the namespace is bound (polling a list).
pub async fn wait_all_bound(ns: &TestNamespace, expected: usize, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let pods = list_pods(ns).await;
        let bound = pods
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count();
        if pods.len() == expected && bound == expected {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "{bound}/{expected} bound after {timeout:?}; unbound: {:?}",
            unbound_pods(ns)
                .await
                .into_iter()
                .take(20)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A kubeconfig for ServiceAccount `namespace/name`: a token from the TokenRequest API (valid for
/// an hour) and the harness CA, written to `sa.kubeconfig` in `scratch`.
pub async fn service_account_kubeconfig(
    cp: &ControlPlane,
    client: &Client,
    namespace: &str,
    name: &str,
    scratch: &Scratch,
) -> PathBuf {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let tr = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let token = sas
        .create_token_request(name, &PostParams::default(), &tr)
        .await
        .expect("TokenRequest")
        .status
        .and_then(|s| s.token)
        .expect("token");
    let ca = std::fs::read_to_string(&cp.info().ca_file).unwrap();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: sa\ncurrent-context: c\n",
        cp.apiserver_url(),
        scratch.write("ca.crt", &ca).display()
    );
    scratch.write("sa.kubeconfig", &kubeconfig)
}
