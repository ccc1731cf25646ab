//! Leader election with a Lease the scheduler may not use (RBAC missing): it does not exit, it
//! says which Role it needs, `/readyz` says it cannot campaign, and once the Role is granted it
//! takes the Lease and schedules — as upstream's leaderelection retries acquiring forever.
//! Revoked again while leading, renewals fail and after `renewDeadline` it exits non-zero.
//!
//! A test binary of its own: the scheduler sees every node of the control plane, and the test
//! creates a cluster-scoped ClusterRoleBinding.

mod common;

use std::time::{Duration, Instant};

use common::{Lease, Scheduler};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use ksched_testenv::TestPod;
use ksched_testenv::kube::api::{Api, ObjectMeta, PostParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_lease_is_retried_until_granted_and_revoking_it_ends_leadership() {
    let common::Setup {
        cp,
        ns,
        client,
        name,
        scratch,
    } = common::setup("leaserbac", 2).await;
    let sa = "scheduler";
    let subject = Subject {
        kind: "ServiceAccount".into(),
        name: sa.into(),
        namespace: Some(ns.name().into()),
        ..Subject::default()
    };
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    };
    let pp = PostParams::default();
    ns.api::<ServiceAccount>()
        .create(
            &pp,
            &ServiceAccount {
                metadata: meta(sa),
                ..ServiceAccount::default()
            },
        )
        .await
        .unwrap();
    // Everything upstream's kube-scheduler may do, which covers Leases only under the name
    // `kube-scheduler`: reading ours is forbidden.
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(
            &pp,
            &ClusterRoleBinding {
                metadata: meta(ns.name()),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "ClusterRole".into(),
                    name: "system:kube-scheduler".into(),
                },
                subjects: Some(vec![subject.clone()]),
            },
        )
        .await
        .unwrap();
    let kubeconfig = common::service_account_kubeconfig(cp, &client, ns.name(), sa, &scratch).await;
    let lease_name = "ksched";
    let config = scratch.write(
        "config.yaml",
        &common::config_yaml(
            &kubeconfig,
            &name,
            Some(Lease {
                namespace: ns.name(),
                name: lease_name,
            }),
        ),
    );
    let mut s = Scheduler::spawn(cp, &config, scratch.path("scheduler.log"), &[], &[]);

    // Forbidden: it keeps running, names the RBAC it needs, and is not ready.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s.output().contains("cannot campaign for the Lease") {
        assert!(s.try_status().is_none(), "exited:\n{}", s.tail(40));
        assert!(
            Instant::now() < deadline,
            "no log line about the Lease:\n{}",
            s.tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = s.output();
    let needed = format!(
        "needs a Role in namespace {} allowing get, create, update and patch on leases (coordination.k8s.io) named {lease_name}",
        ns.name()
    );
    assert!(out.contains(&needed), "{needed:?} not in:\n{out}");
    let (code, body) = common::http_get(s.http, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("forbidden to use Lease"), "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        s.try_status().is_none(),
        "exited on a forbidden Lease:\n{}",
        s.tail(40)
    );

    // Granted: it takes the Lease, becomes ready and schedules.
    ns.api::<Role>()
        .create(
            &pp,
            &Role {
                metadata: meta("leader-election"),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec!["coordination.k8s.io".into()]),
                    resources: Some(vec!["leases".into()]),
                    verbs: vec![
                        "get".into(),
                        "create".into(),
                        "update".into(),
                        "patch".into(),
                    ],
                    ..PolicyRule::default()
                }]),
            },
        )
        .await
        .unwrap();
    ns.api::<RoleBinding>()
        .create(
            &pp,
            &RoleBinding {
                metadata: meta("leader-election"),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: "leader-election".into(),
                },
                subjects: Some(vec![subject]),
            },
        )
        .await
        .unwrap();
    let granted = Instant::now();
    s.wait_ready(Duration::from_secs(60)).await;
    ns.create_pod(TestPod::new("p").cpu("10m").scheduler_name(&name))
        .await
        .unwrap();
    ns.wait_for_pod_bound("p", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.tail(40)));
    eprintln!(
        "leading and bound {:?} after the Role was granted",
        granted.elapsed()
    );
    assert!(s.output().contains("became leader"), "{}", s.tail(40));

    // Revoked while leading: renewals and reads of the Lease now fail, and once none has been
    // seen for renewDeadline (3 s here) the scheduler gives up leadership and exits non-zero,
    // as upstream's `OnStoppedLeading` ("leaderelection lost") does — it cannot know whether
    // another replica has taken over since.
    ns.api::<RoleBinding>()
        .delete("leader-election", &Default::default())
        .await
        .unwrap();
    let revoked = Instant::now();
    let status = s.wait_exit(Duration::from_secs(30)).await;
    eprintln!("exited {:?} after the Role was revoked", revoked.elapsed());
    assert!(!status.success(), "exited successfully:\n{}", s.tail(40));
    let out = s.output();
    assert!(
        out.contains("not renewed within renewDeadline"),
        "{}",
        s.tail(40)
    );
    assert!(out.contains("leadership lost"), "{}", s.tail(40));
}
