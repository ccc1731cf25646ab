//! Bad input and signals: a malformed configuration exits 2 naming file, field path and problem;
//! an unknown plugin lists the known ones; an unreachable apiserver is retried with backoff
//! (clear log lines, `/readyz` 503, `/healthz` 200, no crash, no stack trace); SIGTERM exits 0.
//!
//! No nodes are created here; the schedulers use unique profile names.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Scheduler, Scratch};
use ksched_testenv::ControlPlane;

/// Runs the binary to completion (60 s at most) and returns (exit code, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run_config(scratch: &Scratch, file: &str, yaml: &str) -> (Option<i32>, String, String) {
    let path = scratch.write(file, yaml);
    let (code, stderr) = run(&[
        "--config",
        path.to_str().unwrap(),
        "--bind-address=127.0.0.1:0",
    ]);
    (code, stderr, path.display().to_string())
}

const HEADER: &str =
    "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n";

fn assert_no_crash(stderr: &str) {
    for bad in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(bad), "{bad:?} in:\n{stderr}");
    }
}

#[test]
fn malformed_configs_exit_2_with_file_field_path_and_problem() {
    let scratch = Scratch::new("badconfig");
    // (file, content, what stderr must also say: field path and problem)
    let cases: &[(&str, String, &[&str])] = &[
        (
            "type.yaml",
            format!("{HEADER}profiles:\n- schedulerName: a\n  percentageOfNodesToScore: lots\n"),
            &["profiles[0].percentageOfNodesToScore", "invalid type"],
        ),
        (
            "unknown-field.yaml",
            format!(
                "{HEADER}profiles:\n- schedulerName: a\n  plugins:\n    score:\n      enabeld:\n      - name: NodeResourcesFit\n"
            ),
            &["profiles[0].plugins.score", "unknown field `enabeld`"],
        ),
        (
            "range.yaml",
            format!("{HEADER}percentageOfNodesToScore: 150\n"),
            &["percentageOfNodesToScore", "150"],
        ),
        (
            "duplicate-profile.yaml",
            format!("{HEADER}profiles:\n- schedulerName: a\n- schedulerName: a\n"),
            &["profiles[1].schedulerName", "a"],
        ),
        (
            "lease.yaml",
            format!("{HEADER}leaderElection:\n  leaseDuration: 4s\n  renewDeadline: 5s\n"),
            &["leaderElection"],
        ),
        (
            "syntax.yaml",
            format!("{HEADER}profiles:\n- schedulerName: [a\n"),
            &[],
        ),
        (
            "kind.yaml",
            "apiVersion: kubescheduler.config.k8s.io/v1beta3\nkind: KubeSchedulerConfiguration\n"
                .to_owned(),
            &["apiVersion", "v1beta3"],
        ),
    ];
    for (file, yaml, needles) in cases {
        let (code, stderr, path) = run_config(&scratch, file, yaml);
        eprintln!("--- {file}: exit {code:?}\n{stderr}");
        assert_eq!(code, Some(2), "{file}: exit code; stderr:\n{stderr}");
        assert!(
            stderr.contains(&path),
            "{file}: file name missing:\n{stderr}"
        );
        for n in *needles {
            assert!(stderr.contains(n), "{file}: {n:?} missing:\n{stderr}");
        }
        assert_no_crash(&stderr);
    }
    // A file that does not exist.
    let missing = scratch.path("nope.yaml");
    let (code, stderr) = run(&["--config", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(missing.to_str().unwrap()) && stderr.contains("cannot read"),
        "{stderr}"
    );
    // A bad flag: clap's usage error, exit 2.
    let (code, stderr) = run(&["--bind-address", "not-an-address"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--bind-address"), "{stderr}");
}

#[test]
fn unknown_plugin_lists_the_known_plugins() {
    let scratch = Scratch::new("badplugin");
    let yaml = format!(
        "{HEADER}profiles:\n- schedulerName: a\n  plugins:\n    score:\n      enabled:\n      - name: NetworkTrafic\n"
    );
    let (code, stderr, path) = run_config(&scratch, "plugin.yaml", &yaml);
    eprintln!("{stderr}");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&path), "{stderr}");
    assert!(stderr.contains("NetworkTrafic"), "{stderr}");
    assert!(
        stderr.contains("profiles[0].plugins.score.enabled[0]"),
        "{stderr}"
    );
    for known in [
        "NodeResourcesFit",
        "PrioritySort",
        "DefaultBinder",
        "TaintToleration",
    ] {
        assert!(
            stderr.contains(known),
            "known plugin {known} not listed:\n{stderr}"
        );
    }
    assert_no_crash(&stderr);
    // pluginConfig for an unknown plugin, too.
    let yaml = format!(
        "{HEADER}profiles:\n- schedulerName: a\n  pluginConfig:\n  - name: network_traffic\n    args: {{}}\n"
    );
    let (code, stderr, _) = run_config(&scratch, "plugin-config.yaml", &yaml);
    eprintln!("{stderr}");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("network_traffic") && stderr.contains("profiles[0].pluginConfig[0]"),
        "{stderr}"
    );
}

/// A copy of the harness kubeconfig pointing at a port nothing listens on.
fn unreachable_kubeconfig(cp: &ControlPlane, scratch: &Scratch) -> std::path::PathBuf {
    let closed = common::free_addr();
    let text = std::fs::read_to_string(cp.kubeconfig_path()).unwrap();
    let text = text.replace(cp.apiserver_url(), &format!("https://{closed}"));
    scratch.write("unreachable.kubeconfig", &text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_apiserver_is_retried_not_ready_but_alive_and_sigterm_exits_0() {
    let cp = ControlPlane::shared().await.unwrap();
    let scratch = Scratch::new("unreachable");
    let kubeconfig = unreachable_kubeconfig(cp, &scratch);
    let name = cp.unique_name("ksched-unreachable");
    let config = scratch.write(
        "config.yaml",
        &common::config_yaml(&kubeconfig, &name, None),
    );
    let mut s = Scheduler::spawn(cp, &config, scratch.path("scheduler.log"), &[], &[]);
    // Alive: /healthz 200; not ready: /readyz 503 with the reason.
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::http_get(s.http, "/healthz").await.0 != 200 {
        assert!(s.try_status().is_none(), "exited:\n{}", s.tail(30));
        assert!(Instant::now() < deadline, "no /healthz:\n{}", s.tail(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Keep it up for a while: it must keep retrying, neither exit nor become ready.
    let up = Instant::now();
    while up.elapsed() < Duration::from_secs(8) {
        let (code, body) = common::http_get(s.http, "/readyz").await;
        assert_eq!(code, 503, "/readyz: {body}");
        assert!(body.contains("not ready"), "{body}");
        assert_eq!(common::http_get(s.http, "/healthz").await.0, 200);
        assert!(s.try_status().is_none(), "exited:\n{}", s.tail(30));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = s.output();
    eprintln!("{out}");
    assert_no_crash(&out);
    assert!(
        out.contains("watch failed; retrying with backoff"),
        "no clear log line about the retries:\n{out}"
    );
    assert!(
        out.contains("Connect"),
        "the cause (connect error) is not logged:\n{out}"
    );
    assert!(
        out.contains("retry_in"),
        "the retry delay is not logged:\n{out}"
    );
    assert!(
        !out.contains("watch recovered"),
        "a recovery was logged without an apiserver:\n{out}"
    );
    // One warning per informer, not one per retry (later retries log at debug until the delay
    // reaches its 30 s cap).
    assert_eq!(
        out.matches("watch failed; retrying with backoff").count(),
        2,
        "{out}"
    );
    // Still not ready, and SIGTERM ends it cleanly.
    s.sigterm();
    let status = s.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "{}", s.tail(20));
    assert_no_crash(&s.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0() {
    let cp = ControlPlane::shared().await.unwrap();
    let scratch = Scratch::new("sigterm");
    let name = cp.unique_name("ksched-sigterm");
    let config = scratch.write(
        "config.yaml",
        &common::config_yaml(cp.kubeconfig_path(), &name, None),
    );
    let mut s = Scheduler::spawn(cp, &config, scratch.path("scheduler.log"), &[], &[]);
    s.wait_ready(Duration::from_secs(60)).await;
    let t = Instant::now();
    s.sigterm();
    let status = s.wait_exit(Duration::from_secs(30)).await;
    eprintln!("exited {status} {:?} after SIGTERM", t.elapsed());
    assert_eq!(status.code(), Some(0), "{}", s.tail(20));
    let out = s.output();
    assert!(out.contains("shutdown requested"), "{out}");
    assert_no_crash(&out);
}
