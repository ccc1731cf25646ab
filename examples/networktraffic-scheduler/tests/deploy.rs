//! The manifests in `deploy/`: every object passes a server-side dry run on the real
//! kube-apiserver (like `kubectl apply --dry-run=server`), the embedded KubeSchedulerConfiguration
//! (the default plugins and NetworkTraffic) parses, the names agree with each other, and —
//! applied for real — the RBAC lets the binary, running as the ServiceAccount with the
//! ConfigMap's configuration, elect itself, bind a pod and record events.
//!
//! A test binary of its own: one test creates a node and cluster-scoped RBAC objects.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Scheduler, Scratch};
use k8s_openapi::api::coordination::v1::Lease;
use ksched_framework::config::SchedulerConfig;
use ksched_testenv::kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use ksched_testenv::kube::{Client, discovery};
use ksched_testenv::{ControlPlane, NodeSpec, TestPod, create_node};
use serde_json::Value;

const NAME: &str = "networktraffic-scheduler";

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Every document of `deploy/<file>` as JSON (empty documents skipped).
fn documents(file: &str) -> Vec<Value> {
    let path = deploy_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn all_documents() -> Vec<Value> {
    let mut docs = documents("networktraffic-scheduler.yaml");
    docs.extend(documents("test-workload.yaml"));
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/"))
}

fn describe(doc: &Value) -> String {
    format!(
        "{} {}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["namespace"].as_str().unwrap_or("-"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Creates `doc` through API discovery, like `kubectl apply` (`dry_run`: server-side dry run).
async fn create(client: &Client, doc: &Value, dry_run: bool) -> Result<(), String> {
    let (group, version) = match doc["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", doc["apiVersion"].as_str().unwrap()),
    };
    let gvk = GroupVersionKind::gvk(group, version, doc["kind"].as_str().unwrap());
    let (ar, caps) = discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("discovery of {gvk:?}: {e}"))?;
    let api: Api<DynamicObject> = match caps.scope {
        discovery::Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            doc["metadata"]["namespace"].as_str().unwrap_or("default"),
            &ar,
        ),
        discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
    };
    let obj: DynamicObject = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let pp = PostParams {
        dry_run,
        ..PostParams::default()
    };
    api.create(&pp, &obj)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The ConfigMap's scheduler configuration text.
fn scheduler_config_text(docs: &[Value]) -> String {
    find(docs, "ConfigMap", "networktraffic-scheduler-config")["data"]["scheduler-config.yaml"]
        .as_str()
        .expect("data.scheduler-config.yaml")
        .to_owned()
}

/// One test, in this order: the dry run must see none of the objects the RBAC check creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_then_run_as_the_service_account() {
    let cp = ControlPlane::shared().await.unwrap();
    let client = cp.client().await.unwrap();
    every_manifest_passes_a_server_side_dry_run(&client).await;
    the_rbac_is_enough_to_elect_bind_and_record_events(cp, &client).await;
}

async fn every_manifest_passes_a_server_side_dry_run(client: &Client) {
    let docs = all_documents();
    assert!(docs.len() >= 12, "{} documents", docs.len());
    let mut failures = Vec::new();
    for doc in &docs {
        if let Err(e) = create(client, doc, true).await {
            failures.push(format!("{}: {e}", describe(doc)));
        }
    }
    assert!(
        failures.is_empty(),
        "dry run rejected:\n{}",
        failures.join("\n")
    );
    // The dry run does validate: a broken Deployment is rejected.
    let mut broken = find(&docs, "Deployment", NAME).clone();
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 70000.into();
    let err = create(client, &broken, true)
        .await
        .expect_err("invalid port accepted");
    assert!(err.contains("containerPort"), "{err}");
}

#[test]
fn embedded_scheduler_config_parses_and_names_agree() {
    let docs = all_documents();
    let text = scheduler_config_text(&docs);
    // The binary's registry: the in-tree plugins and NetworkTraffic, which the profile enables.
    let mut registry = ksched_plugins::in_tree_registry();
    registry
        .register(ksched_networktraffic::NAME, ksched_networktraffic::new)
        .unwrap();
    let config = SchedulerConfig::from_yaml(&text, None, &registry)
        .unwrap_or_else(|e| panic!("the ConfigMap's configuration:\n{e}"));
    assert_eq!(config.profiles.len(), 1);
    assert_eq!(config.profiles[0].scheduler_name, NAME);
    let le = &config.leader_election;
    assert!(le.leader_elect);
    assert_eq!(
        (le.resource_namespace.as_str(), le.resource_name.as_str()),
        ("kube-system", NAME)
    );
    assert!(
        config.client_connection.kubeconfig.is_none(),
        "must run in-cluster"
    );

    // NetworkTraffic is enabled with valid args.
    let yaml: Value = serde_norway::from_str(&text).unwrap();
    let profile = &yaml["profiles"][0];
    assert_eq!(
        profile["plugins"]["multiPoint"]["enabled"][0]["name"],
        "NetworkTraffic"
    );
    assert_eq!(profile["pluginConfig"][0]["name"], "NetworkTraffic");
    let args: ksched_networktraffic::NetworkTrafficArgs =
        serde_json::from_value(profile["pluginConfig"][0]["args"].clone())
            .unwrap_or_else(|e| panic!("NetworkTraffic args: {e}"));
    assert!(args.prometheus_address.starts_with("http"));

    // Names that must agree (seed 000 got several of these wrong).
    let deployment = find(&docs, "Deployment", NAME);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(pod["serviceAccountName"], NAME);
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    assert!(
        args.contains(&format!("--config={mount}/scheduler-config.yaml").as_str()),
        "{args:?} vs mount {mount}"
    );
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        "networktraffic-scheduler-config"
    );
    assert!(args.contains(&"--bind-address=0.0.0.0:10259"), "{args:?}");
    assert_eq!(container["ports"][0]["containerPort"], 10259);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    // Every binding names our ServiceAccount; the lease Role names our Lease.
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
    {
        assert_eq!(d["subjects"][0]["name"], NAME, "{}", describe(d));
        assert_eq!(
            d["subjects"][0]["namespace"],
            "kube-system",
            "{}",
            describe(d)
        );
    }
    let roles: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
        .filter_map(|d| d["roleRef"]["name"].as_str())
        .collect();
    for r in [
        "system:kube-scheduler",
        "system:volume-scheduler",
        "extension-apiserver-authentication-reader",
        "networktraffic-scheduler:leader-election",
    ] {
        assert!(roles.contains(&r), "no binding to {r}: {roles:?}");
    }
    let lease_role = find(&docs, "Role", "networktraffic-scheduler:leader-election");
    assert!(
        lease_role["rules"]
            .to_string()
            .contains(&format!("\"{NAME}\""))
    );
    // The test workload asks for this scheduler.
    let workload = find(&docs, "Deployment", "test-scheduler");
    assert_eq!(workload["spec"]["template"]["spec"]["schedulerName"], NAME);
}

async fn the_rbac_is_enough_to_elect_bind_and_record_events(cp: &ControlPlane, client: &Client) {
    let scratch = Scratch::new("deploy");
    // Only the ServiceAccount and RBAC are created for real (no Deployment: there is no
    // kubelet; the binary runs here instead, with the ConfigMap's configuration).
    let docs = documents("networktraffic-scheduler.yaml");
    for doc in docs.iter().filter(|d| {
        matches!(
            d["kind"].as_str(),
            Some("ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding")
        )
    }) {
        create(client, doc, false)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", describe(doc)));
    }
    let kubeconfig =
        common::service_account_kubeconfig(cp, client, "kube-system", NAME, &scratch).await;
    let config = scratch.write("scheduler-config.yaml", &scheduler_config_text(&docs));

    let ns = cp.namespace("deploy").await.unwrap();
    let node = format!("{}-n0", ns.name());
    create_node(client, &node, &NodeSpec::new().cpu("8").memory("16Gi"))
        .await
        .unwrap();
    let kubeconfig_arg = format!("--kubeconfig={}", kubeconfig.display());
    let mut s = Scheduler::spawn(
        cp,
        &config,
        scratch.path("scheduler.log"),
        &[kubeconfig_arg.as_str()],
        &[("HOSTNAME", "deploy-test")],
    );
    s.wait_ready(Duration::from_secs(60)).await;
    ns.create_pod(TestPod::new("web").cpu("100m").scheduler_name(NAME))
        .await
        .unwrap();
    let bound = ns
        .wait_for_pod_bound("web", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.tail(40)));
    assert_eq!(bound, node);
    // The Lease in kube-system, held by this replica.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = leases
        .get(NAME)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(holder.starts_with("deploy-test_"), "lease holder {holder}");
    // The Scheduled event was written with the ServiceAccount's rights.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = ns.events_for_pod("web").await.unwrap();
        if events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Scheduled"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Scheduled event:\n{}",
            s.tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = s.output();
    for bad in ["forbidden", "Forbidden", " 403", "panicked"] {
        assert!(!out.contains(bad), "{bad:?} in the scheduler's log:\n{out}");
    }
    s.sigterm();
    let status = s.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", s.tail(20));
}
