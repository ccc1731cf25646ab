//! The scheduler's kube client speaks HTTP/2 to a real kube-apiserver: ALPN negotiates `h2`,
//! responses come back as HTTP/2, and many concurrent requests — past the HTTP/1.1 in-flight
//! cap — share one connection with a watch.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use ksched::client::{MAX_REQUESTS_IN_FLIGHT, client_with_stats};
use ksched_testenv::ControlPlane;
use kube::{
    Api,
    api::ListParams,
    runtime::{WatchStreamExt, watcher},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_multiplexed_over_one_h2_connection() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let config = cp.config().await.expect("config");
    let (client, stats) = client_with_stats(config, 0.0, 0).expect("client");

    // The first request opens the connection; ALPN picks h2.
    let req = axum::http::Request::get("/api/v1/namespaces/default")
        .body(Vec::new())
        .unwrap();
    let res = client
        .send(req.map(Into::into))
        .await
        .expect("GET namespace");
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), axum::http::Version::HTTP_2);
    assert_eq!(
        (stats.opened(), stats.opened_h2(), stats.open_h2()),
        (1, 1, 1)
    );

    // A watch stays open on the same connection while a burst of requests, more than the
    // HTTP/1.1 cap allows at once, goes through.
    let ns = cp.namespace("h2").await.expect("namespace");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    let mut watch = watcher(cms.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let burst = 3 * MAX_REQUESTS_IN_FLIGHT;
    let creates = (0..burst).map(|i| {
        let cms = cms.clone();
        async move {
            let cm = ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some(format!("cm-{i}")),
                    ..Default::default()
                },
                ..Default::default()
            };
            cms.create(&Default::default(), &cm).await
        }
    });
    let created = futures::future::join_all(creates).await;
    assert!(
        created.iter().all(Result::is_ok),
        "{:?}",
        created.iter().find(|r| r.is_err())
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let reads = (0..burst).map(|_| namespaces.get("default"));
    assert!(
        futures::future::join_all(reads)
            .await
            .iter()
            .all(Result::is_ok)
    );
    // The watch saw the creates.
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        let mut n = 0;
        while n < burst {
            watch.try_next().await.expect("watch").expect("watch ended");
            n += 1;
        }
        n
    })
    .await
    .expect("the watch saw every ConfigMap");
    assert_eq!(seen, burst);
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        burst
    );
    assert_eq!(
        (stats.opened(), stats.open_h2()),
        (1, 1),
        "everything shares the first connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_burst_ends_on_one_connection() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let config = cp.config().await.expect("config");
    let (client, stats) = client_with_stats(config, 0.0, 0).expect("client");
    // No connection yet: the first request opens one while the others wait; once it has
    // negotiated h2 they all share it.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let reads = (0..2 * MAX_REQUESTS_IN_FLIGHT).map(|_| namespaces.get("default"));
    assert!(
        futures::future::join_all(reads)
            .await
            .iter()
            .all(Result::is_ok)
    );
    assert_eq!(
        (stats.opened(), stats.opened_h2(), stats.open_h2()),
        (1, 1, 1)
    );
}
