//! In-place kube-apiserver restarts: same port, same certificates, same etcd data; clients and
//! watches recover. A test binary of its own: restarting the apiserver would disturb other tests
//! on a shared control plane (these tests use private ones anyway).

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use ksched_testenv::kube::api::{Api, ObjectMeta, PostParams};
use ksched_testenv::kube::runtime::{WatchStreamExt, watcher};
use ksched_testenv::{ApiserverRestart, ControlPlane, ControlPlaneOptions};

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some([("k".to_owned(), "v".to_owned())].into()),
        ..ConfigMap::default()
    }
}

async fn readyz(cp: &ControlPlane) -> String {
    let client = cp.client().await.unwrap();
    let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
    client.request_text(req).await.unwrap()
}

/// A graceful restart keeps the URL, the certificates (an existing client keeps working) and the
/// data; a kube-runtime watcher started before the restart sees objects created after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_port_certs_and_data_and_watches_recover() {
    let cp = ControlPlane::start(ControlPlaneOptions::default())
        .await
        .unwrap();
    let ns = cp.namespace("restart").await.unwrap();
    let client = cp.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    cms.create(&PostParams::default(), &config_map("before"))
        .await
        .unwrap();

    // A watcher from before the restart.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let watch = tokio::spawn({
        let cms = cms.clone();
        async move {
            let stream = watcher(cms, watcher::Config::default())
                .default_backoff()
                .applied_objects();
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                if let Ok(cm) = item {
                    let _ = seen_tx.send(cm.metadata.name.unwrap_or_default());
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen_rx.recv().await.as_deref() != Some("before") {
        assert!(Instant::now() < deadline, "watcher did not list 'before'");
    }

    let old_pid = cp.apiserver_pid();
    let url = cp.apiserver_url().to_owned();
    let started = Instant::now();
    // The watcher keeps a watch open, which kube-apiserver holds until it is killed: 3 s.
    let info = cp
        .restart_apiserver_with(ApiserverRestart {
            grace: Some(Duration::from_secs(3)),
            ..ApiserverRestart::default()
        })
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!("graceful restart took {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    let out = cp.supervisor_output(20);
    assert!(out.contains("SIGTERM, SIGKILL after 3s (stdin)"), "{out}");
    assert_eq!(info.apiserver_restarts, Some(1));
    assert_eq!(info.apiserver_url, url, "same port");
    assert_ne!(info.apiserver_pid, old_pid);
    assert_eq!(cp.apiserver_pid(), info.apiserver_pid);
    assert!(
        !alive(old_pid),
        "old kube-apiserver {old_pid} still running"
    );
    assert!(alive(info.apiserver_pid));
    assert_eq!(readyz(&cp).await, "ok");
    // The ready file says the same.
    let ready: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cp.info().dir.join("ready")).unwrap())
            .unwrap();
    assert_eq!(ready["apiserver_pid"], info.apiserver_pid);

    // The old client (same CA, same client certificate) and the data survive.
    let before = cms.get("before").await.unwrap();
    assert_eq!(before.data.unwrap()["k"], "v");
    cms.create(&PostParams::default(), &config_map("after"))
        .await
        .unwrap();
    // The watcher re-established its watch (or relisted) and sees the new object.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), seen_rx.recv())
            .await
            .expect("watcher saw nothing within 30 s of the restart");
        if next.as_deref() == Some("after") {
            break;
        }
        assert!(Instant::now() < deadline, "watcher did not see 'after'");
    }
    watch.abort();
    cp.stop().await.unwrap();
}

/// A crash (SIGKILL) with down time: requests fail while it is down, work again afterwards;
/// restarts count up; SIGUSR1 to the supervisor restarts too; a stopped control plane refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_with_down_time_and_sigusr1() {
    let cp = ControlPlane::start(ControlPlaneOptions::default())
        .await
        .unwrap();
    let client = cp.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &config_map("survivor"))
        .await
        .unwrap();

    let old_pid = cp.apiserver_pid();
    let restart = cp.restart_apiserver_with(ApiserverRestart {
        kill: true,
        down_for: Duration::from_secs(2),
        ..ApiserverRestart::default()
    });
    let probe = async {
        // While it is down, requests fail (connection refused), and nothing hangs.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(!alive(old_pid), "SIGKILL should be immediate");
        let r = tokio::time::timeout(Duration::from_secs(10), cms.get("survivor")).await;
        assert!(
            matches!(r, Ok(Err(_))),
            "request while down: {:?}",
            r.map(|r| r.map(|c| c.metadata.name))
        );
    };
    let started = Instant::now();
    let (info, ()) = tokio::join!(restart, probe);
    let info = info.unwrap();
    let took = started.elapsed();
    eprintln!("kill + 2 s down + start took {took:?}");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert_eq!(info.apiserver_restarts, Some(1));
    assert!(cms.get("survivor").await.is_ok());

    // SIGUSR1 to the supervisor: a graceful restart.
    let pid = cp.apiserver_pid();
    let status = std::process::Command::new("kill")
        .arg("-USR1")
        .arg(cp.supervisor_pid().unwrap().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready: serde_json::Value = std::fs::read_to_string(cp.info().dir.join("ready"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        if ready["apiserver_restarts"] == 2 {
            assert_ne!(ready["apiserver_pid"], pid);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no restart after SIGUSR1:\n{}",
            cp.supervisor_output(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The next restart through the API ignores the ready line the SIGUSR1 restart left behind.
    let info = cp.restart_apiserver().await.unwrap();
    assert_eq!(info.apiserver_restarts, Some(3));
    assert!(cms.get("survivor").await.is_ok());
    let out = cp.supervisor_output(50);
    assert!(out.contains("SIGKILL, down for 2s (stdin)"), "{out}");
    assert!(out.contains("SIGTERM (SIGUSR1)"), "{out}");

    let pids = [
        cp.info().supervisor_pid,
        cp.apiserver_pid(),
        cp.info().etcd_pid,
    ];
    cp.stop().await.unwrap();
    for pid in pids {
        assert!(!alive(pid), "{pid} still running after stop");
    }
}
