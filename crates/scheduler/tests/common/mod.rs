//! Starting ksched in-process against the test control plane.

#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use ksched::Scheduler;
use ksched_testenv::{ControlPlane, kube::Client};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running in-process scheduler.
pub struct Running {
    /// Cancel to shut the scheduler down.
    pub token: CancellationToken,
    /// The `run` task.
    pub task: JoinHandle<Result<(), ksched::Error>>,
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub http: SocketAddr,
}

impl Running {
    /// Stops it and waits for `run` to return.
    pub async fn stop(self) -> Result<(), ksched::Error> {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("scheduler did not stop")
            .expect("join")
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> String {
        http_get(self.http, "/metrics").await.1
    }

    /// The value of one sample line (`name{labels}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.trim().split(' ').next()?.parse().ok())
            })
            .unwrap_or(0.0)
    }
}

/// A free loopback port.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub use ksched_testenv::http_get;

/// Starts ksched with one profile named `profile` (leader election off) and waits until
/// `/readyz` answers 200.
pub async fn start(client: Client, profile: &str, extra_yaml: &str) -> Running {
    let yaml = format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nleaderElection:\n  leaderElect: false\nclientConnection:\n  qps: 5000\n  burst: 5000\nprofiles:\n- schedulerName: {profile}\n{extra_yaml}"
    );
    let http = free_addr();
    let scheduler = Scheduler::builder()
        .with_client(client)
        .with_config_yaml(yaml)
        .with_bind_address(http)
        .build()
        .await
        .expect("build scheduler");
    let token = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(token.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(http).await.is_ok()
            && http_get(http, "/readyz").await.0 == 200
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "scheduler not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Running { token, task, http }
}

/// The shared control plane and a client.
pub async fn cluster() -> (&'static ControlPlane, Client) {
    let cp = ControlPlane::shared().await.expect("control plane");
    let client = cp.client().await.expect("client");
    (cp, client)
}
