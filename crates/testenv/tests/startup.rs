//! Start-up, failure and teardown behaviour of private control planes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ksched_testenv::{ControlPlane, ControlPlaneOptions, Error};

fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ksched-testenv-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; count it as dead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

async fn wait_dead(pids: &[u32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|&p| alive(p)) {
        assert!(Instant::now() < deadline, "processes {pids:?} still alive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

async fn bin_dir() -> PathBuf {
    tokio::task::spawn_blocking(ksched_testenv::bin_dir)
        .await
        .unwrap()
        .expect("binaries")
}

#[tokio::test]
async fn missing_etcd_binary_fails_fast_with_a_clear_error() {
    let real = bin_dir().await;
    let dir = scratch_dir("missing-bin");
    std::os::unix::fs::symlink(real.join("ksched-testenv"), dir.join("ksched-testenv")).unwrap();
    let started = Instant::now();
    let err = ControlPlane::start(ControlPlaneOptions {
        bin_dir: Some(dir.clone()),
        ..Default::default()
    })
    .await
    .expect_err("no etcd binary");
    assert!(started.elapsed() < Duration::from_secs(20));
    let message = err.to_string();
    eprintln!("{message}");
    assert!(matches!(err, Error::Startup { .. }), "{message}");
    assert!(message.contains("etcd binary not found"), "{message}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn missing_supervisor_is_reported() {
    let dir = scratch_dir("empty-bin");
    let err = ControlPlane::start(ControlPlaneOptions {
        bin_dir: Some(dir.clone()),
        ..Default::default()
    })
    .await
    .expect_err("empty bin dir");
    let message = err.to_string();
    eprintln!("{message}");
    assert!(
        message.contains("cannot run ksched-testenv up"),
        "{message}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn apiserver_that_exits_is_reported_with_its_log_tail() {
    let started = Instant::now();
    let err = ControlPlane::start(ControlPlaneOptions {
        apiserver_args: vec!["--no-such-flag=1".to_owned()],
        ..Default::default()
    })
    .await
    .expect_err("bad flag");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let message = err.to_string();
    eprintln!("{message}");
    assert!(
        message.contains("kube-apiserver failed to start"),
        "{message}"
    );
    assert!(message.contains("last lines of"), "{message}");
    assert!(
        message.contains("unknown flag: --no-such-flag"),
        "{message}"
    );
}

#[tokio::test]
async fn taken_port_without_retries_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = ControlPlane::start(ControlPlaneOptions {
        etcd_port: Some(port),
        port_attempts: Some(1),
        ..Default::default()
    })
    .await
    .expect_err("port is taken");
    let message = err.to_string();
    eprintln!("{message}");
    assert!(message.contains("address already in use"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
}

#[tokio::test]
async fn taken_port_is_retried_and_stop_cleans_up() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = scratch_dir("retry").join("cp");
    let cp = ControlPlane::start(ControlPlaneOptions {
        apiserver_port: Some(port),
        dir: Some(dir.clone()),
        no_api_limits: true,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !cp.apiserver_url().ends_with(&format!(":{port}")),
        "{}",
        cp.apiserver_url()
    );
    assert!(
        cp.supervisor_output(50).contains("attempt 2/3"),
        "{}",
        cp.supervisor_output(50)
    );

    let info = cp.info().clone();
    assert_eq!(info.dir, dir);
    assert!(dir.join("ready").is_file());
    let apiserver_cmd = cmdline(info.apiserver_pid);
    for flag in [
        "--enable-priority-and-fairness=false",
        "--max-requests-inflight=0",
        "--max-mutating-requests-inflight=0",
        "--advertise-address=127.0.0.1",
        "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition,Priority",
    ] {
        assert!(
            apiserver_cmd.contains(flag),
            "{flag} missing in {apiserver_cmd}"
        );
    }
    assert!(cmdline(info.etcd_pid).contains("--unsafe-no-fsync=true"));
    let client = cp.client().await.expect("client");
    client.apiserver_version().await.expect("version");

    cp.stop().await.expect("stop");
    wait_dead(
        &[info.supervisor_pid, info.apiserver_pid, info.etcd_pid],
        Duration::from_secs(5),
    )
    .await;
    assert!(!dir.exists(), "{} left behind", dir.display());
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[tokio::test]
async fn killed_supervisor_takes_etcd_and_apiserver_down() {
    let cp = ControlPlane::start(ControlPlaneOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let info = cp.info().clone();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &info.supervisor_pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Pdeathsig: the children die with their supervisor.
    wait_dead(
        &[info.apiserver_pid, info.etcd_pid],
        Duration::from_secs(10),
    )
    .await;
    // The children die as the supervisor's main thread exits, a moment before the process can
    // be reaped: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    let err = loop {
        match cp.ensure_running() {
            Err(e) => break e,
            Ok(()) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(()) => panic!("supervisor was killed but still looks alive"),
        }
    };
    assert!(matches!(err, Error::NotRunning { .. }), "{err}");
    drop(cp);
    // A SIGKILLed supervisor cannot remove its directory; do it here.
    remove_dir(&info.dir);
}

fn remove_dir(dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
}
