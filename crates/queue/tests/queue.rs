//! Behaviour of the scheduling queue, with a fake clock.

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::*;
use k8s_openapi::{
    api::core::v1::{Affinity, Pod, PodAffinity, PodAffinityTerm, PodStatus},
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use ksched_framework::{
    ActionType, ClusterEvent, ClusterEventWithHint, ClusterObject, EventResource, PodActivator,
    PodInfo, PodNominator, QueueingHint, events::well_known,
};
use ksched_queue::{
    Clock, Error, FakeClock, PriorityQueue, QueueConfig, QueueName, TokioClock,
    pod_scheduling_properties_change,
};

fn pop_names(q: &PriorityQueue) -> Vec<String> {
    std::iter::from_fn(|| q.try_pop())
        .map(|p| p.pod().metadata.name.clone().unwrap_or_default())
        .collect()
}

#[test]
fn higher_priority_first_then_first_in_first_out() {
    let (q, _) = queue();
    for (name, prio) in [("a", 0), ("b", 10), ("c", 0), ("d", 10), ("e", 5), ("f", 0)] {
        q.add(Arc::new(with_priority(pod(name), prio))).unwrap();
    }
    assert_eq!(pop_names(&q), ["b", "d", "e", "a", "c", "f"]);
}

#[test]
fn equal_pods_leave_in_arrival_order() {
    // The fake clock stands still: every pod has the same timestamp and priority.
    let (q, _) = queue();
    let expected: Vec<String> = (0..2000).map(|i| format!("p{i:04}")).collect();
    for name in &expected {
        q.add(Arc::new(pod(name))).unwrap();
    }
    assert_eq!(pop_names(&q), expected);
}

#[test]
fn earlier_timestamp_first_among_equal_priority() {
    let (q, clock) = queue();
    q.add(Arc::new(pod("old"))).unwrap();
    pop_and_fail(&q, "old", &[QUEUES_ON_NODE_ADD]);
    clock.advance(secs(1));
    q.add(Arc::new(pod("new"))).unwrap();
    clock.advance(secs(5));
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
    // "old" re-entered the queue (timestamp reset) before "new" was added.
    assert_eq!(pop_names(&q), ["old", "new"]);
}

#[test]
fn custom_queue_sort_with_fifo_ties() {
    let by_label = |p: &ksched_framework::QueuedPodInfo| {
        p.pod()
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("rank"))
            .cloned()
            .unwrap_or_default()
    };
    let (q, _) = queue_with(|c| c.with_less(Arc::new(move |a, b| by_label(a) < by_label(b))));
    for (name, rank) in [("x", "2"), ("y", "1"), ("z", "2"), ("w", "1")] {
        q.add(Arc::new(with_label(pod(name), "rank", rank)))
            .unwrap();
    }
    assert_eq!(pop_names(&q), ["y", "w", "x", "z"]);
}

/// Fails `name` once more and returns how long after the failure the backoff flush first
/// moves it to activeQ, probing every 100 ms.
fn backoff_observed(q: &PriorityQueue, clock: &FakeClock, name: &str) -> Duration {
    let failed_at = clock.now();
    pop_and_fail(q, name, &[QUEUES_ON_NODE_ADD]);
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
    assert_eq!(
        q.metrics().pending.backoff,
        1,
        "{name} waits out its backoff"
    );
    loop {
        clock.advance(millis(100));
        q.flush_backoff_q_completed();
        if q.metrics().pending.active == 1 {
            return clock.now() - failed_at;
        }
    }
}

#[test]
fn backoff_doubles_from_one_second_to_the_ten_second_cap() {
    let (q, clock) = queue();
    q.add(Arc::new(pod("p"))).unwrap();
    // Failures happen on whole seconds (the queue's windows start when it is built): the pod
    // leaves backoffQ at the first flush of the window after the one its expiry falls in.
    let observed: Vec<u128> = (1..=6)
        .map(|_| backoff_observed(&q, &clock, "p").as_millis())
        .collect();
    assert_eq!(
        observed,
        [2000, 3000, 5000, 9000, 11000, 11000],
        "1, 2, 4, 8, 10, 10 s plus the ordering window"
    );
    let backoffs: Vec<u64> = (1..=6)
        .map(|n| {
            ksched_queue::backoff_duration(
                n,
                ksched_queue::DEFAULT_POD_INITIAL_BACKOFF,
                ksched_queue::DEFAULT_POD_MAX_BACKOFF,
            )
            .as_secs()
        })
        .collect();
    assert_eq!(backoffs, [1, 2, 4, 8, 10, 10]);
}

#[test]
fn backoff_is_configurable() {
    let (q, clock) = queue_with(|c| c.with_backoff(secs(3), secs(5)));
    q.add(Arc::new(pod("p"))).unwrap();
    let first = backoff_observed(&q, &clock, "p");
    let second = backoff_observed(&q, &clock, "p");
    assert_eq!((first, second), (secs(4), secs(6)));
}

#[test]
fn errors_back_off_on_their_own_count() {
    let (q, clock) = queue();
    q.add(Arc::new(pod("p"))).unwrap();
    for _ in 0..3 {
        backoff_observed(&q, &clock, "p");
    }
    // Three rejections would mean 8 s next; an error starts its own count at 1 s, in the
    // error heap, straight from the failed attempt (no event needed).
    let info = q.try_pop().unwrap();
    assert_eq!(
        (info.unschedulable_count, info.consecutive_errors_count),
        (3, 0)
    );
    let failed_at = clock.now();
    q.add_unschedulable_if_not_present(info).unwrap();
    assert_eq!(q.metrics().pending.backoff, 1);
    assert!(
        q.try_pop().is_none(),
        "errored pods are not popped early from backoffQ"
    );
    clock.advance(millis(1900));
    q.flush_backoff_q_completed();
    assert_eq!(q.metrics().pending.backoff, 1);
    clock.advance(millis(100));
    q.flush_backoff_q_completed();
    assert_eq!(q.metrics().pending.active, 1);
    assert_eq!(clock.now() - failed_at, secs(2));
    let info = q.try_pop().unwrap();
    assert_eq!(
        (info.unschedulable_count, info.consecutive_errors_count),
        (3, 1)
    );
}

#[test]
fn leftover_flush_moves_pods_stuck_for_five_minutes() {
    let (q, clock) = queue();
    q.add(Arc::new(pod("deaf"))).unwrap();
    pop_and_fail(&q, "deaf", &[DEAF]);
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
    assert_eq!(
        q.metrics().pending.unschedulable,
        1,
        "no registered event can help it"
    );
    clock.advance(secs(300));
    q.flush_unschedulable_pods_leftover();
    assert_eq!(
        q.metrics().pending.unschedulable,
        1,
        "exactly five minutes is not more than five"
    );
    clock.advance(secs(30));
    q.flush_unschedulable_pods_leftover();
    assert_eq!(
        q.metrics().pending.active,
        1,
        "backoff long over: straight to activeQ"
    );
    let incoming = q.metrics().incoming;
    assert!(
        incoming
            .iter()
            .any(|i| i.queue == QueueName::Active && i.event == "UnschedulableTimeout")
    );
}

#[test]
fn hints_decide_which_rejected_pods_an_event_moves() {
    let (q, _) = queue();
    for name in ["queue", "skip", "deaf", "error"] {
        q.add(Arc::new(pod(name))).unwrap();
    }
    pop_and_fail(&q, "queue", &[QUEUES_ON_NODE_ADD]);
    pop_and_fail(&q, "skip", &[SKIPS_NODE_ADD]);
    pop_and_fail(&q, "deaf", &[DEAF]);
    pop_and_fail(&q, "error", &[]);
    let m = q.metrics().pending;
    assert_eq!(
        (m.unschedulable, m.backoff),
        (3, 1),
        "an error goes straight to backoff"
    );

    // An event nobody registered changes nothing.
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_DELETE, None, None, None);
    assert_eq!(q.metrics().pending.unschedulable, 3);

    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
    assert_eq!(names(&q.unschedulable_pods()), ["deaf", "skip"]);
    assert_eq!(names(&q.pods_in_backoff_q()), ["error", "queue"]);

    // A rejected pod whose backoff is over goes straight to activeQ.
    let (q, clock) = queue();
    q.add(Arc::new(pod("late"))).unwrap();
    pop_and_fail(&q, "late", &[QUEUES_ON_NODE_ADD]);
    clock.advance(secs(3));
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
    assert_eq!(names(&q.pods_in_active_q()), ["late"]);
}

#[test]
fn pre_check_filters_pods() {
    let (q, _) = queue();
    q.add(Arc::new(pod("a"))).unwrap();
    q.add(Arc::new(pod("b"))).unwrap();
    pop_and_fail(&q, "a", &[QUEUES_ON_NODE_ADD]);
    pop_and_fail(&q, "b", &[QUEUES_ON_NODE_ADD]);
    let only_a = |p: &Pod| p.metadata.name.as_deref() == Some("a");
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, Some(&only_a));
    assert_eq!(names(&q.unschedulable_pods()), ["b"]);
}

#[test]
fn hint_errors_and_objects() {
    let clock = Arc::new(ksched_queue::FakeClock::new());
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let config = QueueConfig::default()
        .with_clock(clock.clone())
        .with_hints(
            PROFILE,
            "Failing",
            [ClusterEventWithHint::with_hint(
                well_known::NODE_ADD,
                |_, _, _| Err("boom".into()),
            )],
        )
        .with_hints(
            PROFILE,
            "Recorder",
            [ClusterEventWithHint::with_hint(
                well_known::NODE_ADD,
                move |pod, old, new| {
                    seen2.lock().push((
                        pod.metadata.name.clone(),
                        old.is_some(),
                        new.and_then(|n| n.as_node()).is_some(),
                    ));
                    Ok(QueueingHint::QueueSkip)
                },
            )],
        );
    let q = PriorityQueue::new(config).unwrap();
    q.add(Arc::new(pod("a"))).unwrap();
    q.add(Arc::new(pod("b"))).unwrap();
    pop_and_fail(&q, "a", &["Failing"]);
    pop_and_fail(&q, "b", &["Recorder"]);
    let node = ClusterObject::Node(Arc::new(Default::default()));
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, Some(&node), None);
    assert_eq!(
        names(&q.pods_in_backoff_q()),
        ["a"],
        "a failing hint means Queue"
    );
    assert_eq!(*seen.lock(), [(Some("b".to_owned()), false, true)]);
}

#[test]
fn pending_plugins_skip_the_backoff() {
    let (q, _) = queue_with(|c| {
        c.with_hints(
            PROFILE,
            "Waiter",
            [ClusterEventWithHint::new(ClusterEvent::new(
                EventResource::Node,
                ActionType::ADD,
            ))],
        )
    });
    q.add(Arc::new(pod("p"))).unwrap();
    let mut info = q.try_pop().unwrap();
    info.pending_plugins.insert("Waiter".into());
    q.add_unschedulable_if_not_present(info).unwrap();
    assert_eq!(q.metrics().pending.unschedulable, 1);
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
    assert_eq!(
        names(&q.pods_in_active_q()),
        ["p"],
        "a Pending plugin's Queue goes straight to activeQ"
    );
}

#[test]
fn events_during_an_attempt_are_replayed_when_it_fails() {
    let (q, _) = queue();
    q.add(Arc::new(pod("a"))).unwrap();
    q.add(Arc::new(pod("b"))).unwrap();
    let a = q.try_pop().unwrap();
    // The node arrives while `a` is being scheduled, before `b` is popped.
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
    let b = q.try_pop().unwrap();
    assert_eq!(q.metrics().in_flight_events, 1);
    for mut info in [a, b] {
        info.unschedulable_plugins.insert(QUEUES_ON_NODE_ADD.into());
        q.add_unschedulable_if_not_present(info).unwrap();
    }
    // a saw the NodeAdd and backs off; b was popped after it and waits for the next one.
    assert_eq!(names(&q.pods_in_backoff_q()), ["a"]);
    assert_eq!(names(&q.unschedulable_pods()), ["b"]);
    let m = q.metrics();
    assert_eq!(
        (m.in_flight_pods, m.in_flight_events),
        (0, 0),
        "the log is pruned with the last pod"
    );
}

#[test]
fn events_a_rejector_ignores_are_not_replayed() {
    let (q, _) = queue();
    q.add(Arc::new(pod("a"))).unwrap();
    let mut a = q.try_pop().unwrap();
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
    a.unschedulable_plugins.insert(SKIPS_NODE_ADD.into());
    q.add_unschedulable_if_not_present(a).unwrap();
    assert_eq!(names(&q.unschedulable_pods()), ["a"]);
}

#[test]
fn updates_and_activations_of_in_flight_pods_are_replayed() {
    let (q, _) = queue();
    let old = Arc::new(pod("a"));
    q.add(old.clone()).unwrap();
    let mut a = q.try_pop().unwrap();
    let relabelled = Arc::new(with_label(pod("a"), "tier", "db"));
    q.update(&old, relabelled.clone()).unwrap();
    assert_eq!(
        q.metrics().pending.total(),
        0,
        "an in-flight pod is not re-added by its update"
    );
    a.unschedulable_plugins.insert(LABEL_WATCHER.into());
    q.add_unschedulable_if_not_present(a).unwrap();
    assert_eq!(
        q.metrics().pending.backoff,
        1,
        "its label change was replayed against LabelWatcher"
    );

    // ForceActivate targets one in-flight pod only.
    let (q, _) = queue();
    q.add(Arc::new(pod("x"))).unwrap();
    q.add(Arc::new(pod("y"))).unwrap();
    let (mut x, mut y) = (q.try_pop().unwrap(), q.try_pop().unwrap());
    q.activate(&HashMap::from([(
        "default/x".to_owned(),
        Arc::new(pod("x")),
    )]));
    for info in [&mut x, &mut y] {
        info.unschedulable_plugins.insert(DEAF.into());
    }
    q.add_unschedulable_if_not_present(x).unwrap();
    q.add_unschedulable_if_not_present(y).unwrap();
    assert_eq!(names(&q.pods_in_backoff_q()), ["x"]);
    assert_eq!(names(&q.unschedulable_pods()), ["y"]);
}

#[test]
fn gated_pods_wait_for_the_update_that_removes_their_gates() {
    let (q, clock) = queue();
    let closed = Arc::new(gated(pod("g")));
    q.add(closed.clone()).unwrap();
    let m = q.metrics().pending;
    assert_eq!((m.gated, m.unschedulable, m.active), (1, 0, 0));
    assert!(q.try_pop().is_none());

    // Events and the leftover flush leave it alone.
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
    clock.advance(secs(600));
    q.flush_unschedulable_pods_leftover();
    assert_eq!(q.metrics().pending.gated, 1);

    // An unrelated update keeps it gated.
    let relabelled = Arc::new(with_label(gated(pod("g")), "a", "b"));
    q.update(&closed, relabelled.clone()).unwrap();
    assert_eq!(q.metrics().pending.gated, 1);

    let open = Arc::new(with_label(pod("g"), "a", "b"));
    q.update(&relabelled, open).unwrap();
    assert_eq!(q.metrics().pending.gated, 0);
    let p = q.try_pop().expect("released");
    assert_eq!(p.attempts, 1);
    assert!(p.gating_plugin.is_none());
    assert!(p.pod().spec.as_ref().unwrap().scheduling_gates.is_none());
}

#[test]
fn pop_takes_from_backoff_when_active_is_empty() {
    let (q, _) = queue();
    q.add(Arc::new(with_priority(pod("low"), 1))).unwrap();
    q.add(Arc::new(with_priority(pod("high"), 9))).unwrap();
    pop_and_fail(&q, "high", &[QUEUES_ON_NODE_ADD]);
    pop_and_fail(&q, "low", &[QUEUES_ON_NODE_ADD]);
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
    assert_eq!(q.metrics().pending.backoff, 2);
    // Same backoff window: activeQ order, so the higher priority first.
    assert_eq!(pop_names(&q), ["high", "low"]);
    let incoming = q.metrics().incoming;
    assert!(
        incoming
            .iter()
            .any(|i| i.queue == QueueName::Active && i.event == "PopFromBackoffQ" && i.count == 2)
    );
}

#[tokio::test]
async fn pop_waits_for_a_pod_and_close_wakes_every_waiter() {
    let (q, _) = queue();
    let waiter = tokio::spawn({
        let q = q.clone();
        async move { q.pop().await.map(|p| p.key().to_owned()) }
    });
    tokio::task::yield_now().await;
    q.add(Arc::new(pod("a"))).unwrap();
    assert_eq!(waiter.await.unwrap().as_deref(), Some("default/a"));

    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move { q.pop().await.is_none() })
        })
        .collect();
    tokio::time::sleep(millis(20)).await;
    q.close();
    for w in waiters {
        assert!(
            tokio::time::timeout(secs(5), w)
                .await
                .expect("woken")
                .unwrap()
        );
    }
    q.add(Arc::new(pod("late"))).unwrap();
    assert!(q.pop().await.is_none(), "closed stays closed");
    assert!(q.is_closed());
}

#[tokio::test(start_paused = true)]
async fn run_flushes_in_the_background() {
    let q = Arc::new(
        PriorityQueue::new(
            QueueConfig::default()
                .with_clock(Arc::new(TokioClock))
                .with_hints(
                    PROFILE,
                    QUEUES_ON_NODE_ADD,
                    [ClusterEventWithHint::new(well_known::NODE_ADD)],
                ),
        )
        .unwrap(),
    );
    let tasks = q.run();
    q.add(Arc::new(pod("a"))).unwrap();
    let mut a = q.pop().await.unwrap();
    a.unschedulable_plugins.insert(DEAF.into());
    q.add_unschedulable_if_not_present(a).unwrap();
    // Nothing registered helps; the leftover flush frees it after five minutes.
    let a = tokio::time::timeout(Duration::from_secs(400), q.pop())
        .await
        .expect("flushed")
        .unwrap();
    assert_eq!(a.attempts, 2);
    q.close();
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn updates_in_place_move_or_add() {
    let (q, _) = queue();
    let v1 = Arc::new(with_priority(pod("a"), 1));
    q.add(v1.clone()).unwrap();
    q.add(Arc::new(with_priority(pod("b"), 5))).unwrap();
    let v2 = Arc::new(with_priority(with_label(pod("a"), "v", "2"), 9));
    q.update(&v1, v2).unwrap();
    let first = q.try_pop().unwrap();
    assert_eq!(first.key(), "default/a", "re-sorted by its new priority");
    assert_eq!(first.pod().metadata.labels.as_ref().unwrap()["v"], "2");

    // Unknown pods are added.
    q.update(&Arc::new(pod("c")), Arc::new(pod("c"))).unwrap();
    assert_eq!(names(&q.pods_in_active_q()), ["b", "c"]);
}

#[test]
fn an_unschedulable_pod_moves_on_an_update_its_rejector_cares_about() {
    let (q, _) = queue();
    let v1 = Arc::new(pod("a"));
    q.add(v1.clone()).unwrap();
    pop_and_fail(&q, "a", &[LABEL_WATCHER]);

    // Status and bookkeeping changes are not updates.
    let mut v2 = pod("a");
    v2.metadata.resource_version = Some("2".into());
    v2.status = Some(PodStatus {
        message: Some("unschedulable".into()),
        ..Default::default()
    });
    let v2 = Arc::new(v2);
    q.update(&v1, v2.clone()).unwrap();
    assert_eq!(q.metrics().pending.unschedulable, 1);
    // An annotation is an update, but LabelWatcher only listens to label changes.
    let mut v3 = (*v2).clone();
    v3.metadata.annotations = Some([("k".to_owned(), "v".to_owned())].into());
    let v3 = Arc::new(v3);
    q.update(&v2, v3.clone()).unwrap();
    assert_eq!(q.metrics().pending.unschedulable, 1);
    let v4 = Arc::new(with_label((*v3).clone(), "app", "x"));
    assert_eq!(
        pod_scheduling_properties_change(&v4, &v3)[0].action,
        ActionType::UPDATE_POD_LABEL
    );
    q.update(&v3, v4).unwrap();
    assert_eq!(q.metrics().pending.backoff, 1);
    let kept = q.get_pod("default", "a").unwrap();
    assert_eq!(kept.pod().metadata.labels.as_ref().unwrap()["app"], "x");
}

#[test]
fn delete_removes_a_pod_wherever_it_waits() {
    let (q, _) = queue();
    for name in ["errored", "unsched", "active", "gated"] {
        let p = if name == "gated" {
            gated(pod(name))
        } else {
            pod(name)
        };
        q.add(Arc::new(p)).unwrap();
    }
    pop_and_fail(&q, "errored", &[]);
    pop_and_fail(&q, "unsched", &[DEAF]);
    let (all, summary) = q.pending_pods();
    assert_eq!(summary, "activeQ:1; backoffQ:1; unschedulablePods:2");
    assert_eq!(all.len(), 4, "{summary}");
    for p in all {
        assert!(q.delete(&p));
        assert!(!q.delete(&p));
    }
    assert_eq!(q.metrics().pending.total(), 0);
    assert!(q.try_pop().is_none());
}

#[test]
fn activate_moves_unschedulable_and_backoff_pods_to_active() {
    let (q, _) = queue();
    for name in ["u", "b", "gated", "active"] {
        let p = if name == "gated" {
            gated(pod(name))
        } else {
            pod(name)
        };
        q.add(Arc::new(p)).unwrap();
    }
    pop_and_fail(&q, "u", &[DEAF]);
    pop_and_fail(&q, "b", &[QUEUES_ON_NODE_ADD]);
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
    assert_eq!(names(&q.pods_in_backoff_q()), ["b"]);
    let pods: HashMap<String, Arc<Pod>> = ["u", "b", "gated", "unknown"]
        .into_iter()
        .map(|n| {
            (
                format!("default/{n}"),
                Arc::new(if n == "gated" { gated(pod(n)) } else { pod(n) }),
            )
        })
        .collect();
    PodActivator::activate(&*q, pods);
    assert_eq!(names(&q.pods_in_active_q()), ["active", "b", "u"]);
    assert_eq!(q.metrics().pending.gated, 1, "still gated");
}

#[test]
fn an_assigned_pod_moves_the_pods_whose_affinity_it_satisfies() {
    let (q, _) = queue_with(|c| {
        c.with_hints(
            PROFILE,
            "InterPodAffinity",
            [ClusterEventWithHint::new(ClusterEvent::new(
                EventResource::Pod,
                ActionType::ALL,
            ))],
        )
        .with_hints(
            PROFILE,
            "PodTopologySpread",
            [ClusterEventWithHint::new(ClusterEvent::new(
                EventResource::Pod,
                ActionType::ALL,
            ))],
        )
    });
    let mut wants_db = pod("wants-db");
    wants_db.spec.get_or_insert_default().affinity = Some(Affinity {
        pod_affinity: Some(PodAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some([("app".to_owned(), "db".to_owned())].into()),
                    ..Default::default()
                }),
                topology_key: "kubernetes.io/hostname".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });
    q.add(Arc::new(wants_db)).unwrap();
    q.add(Arc::new(pod("spread"))).unwrap();
    q.add(Arc::new(pod("other"))).unwrap();
    pop_and_fail(&q, "wants-db", &["InterPodAffinity"]);
    pop_and_fail(&q, "spread", &["PodTopologySpread"]);
    pop_and_fail(&q, "other", &["InterPodAffinity"]);

    let mut web = with_label(pod("web-0"), "app", "web");
    web.metadata.namespace = Some("elsewhere".into());
    web.spec.get_or_insert_default().node_name = Some("n1".into());
    q.assigned_pod_added(&Arc::new(web));
    assert_eq!(q.metrics().pending.unschedulable, 3);

    let mut db = with_label(pod("db-0"), "app", "db");
    db.spec.get_or_insert_default().node_name = Some("n1".into());
    q.assigned_pod_added(&Arc::new(db));
    assert_eq!(names(&q.pods_in_backoff_q()), ["spread", "wants-db"]);
    assert_eq!(names(&q.unschedulable_pods()), ["other"]);

    // A scale-down of an assigned pod may help anyone.
    let big = Arc::new(pod("db-1"));
    q.assigned_pod_updated(
        &big,
        &big,
        &ClusterEvent::new(
            EventResource::AssignedPod,
            ActionType::UPDATE_POD_SCALE_DOWN,
        ),
    );
    assert_eq!(q.metrics().pending.unschedulable, 0);
}

#[test]
fn the_nominator_tracks_nominations() {
    let (q, _) = queue();
    let mut nominated = pod("n");
    nominated.status = Some(PodStatus {
        nominated_node_name: Some("node-1".into()),
        ..Default::default()
    });
    let nominated = Arc::new(nominated);
    q.add(nominated.clone()).unwrap();
    let on_node = |n: &str| -> Vec<String> {
        q.nominated_pods_for_node(n)
            .iter()
            .map(|p| p.key().to_owned())
            .collect()
    };
    assert_eq!(on_node("node-1"), ["default/n"]);
    q.add_nominated_pod(
        Arc::new(PodInfo::new(Arc::new(pod("m")))),
        Some("node-2".into()),
    );
    assert_eq!(on_node("node-2"), ["default/m"]);
    q.delete_nominated_pod_if_exists(&pod("m"));
    assert!(on_node("node-2").is_empty());
    q.delete(&nominated);
    assert!(on_node("node-1").is_empty());
    assert_eq!(q.metrics().nominated_pods, 0);
}

#[test]
fn malformed_pods_are_refused() {
    let (q, _) = queue();
    let mut no_uid = pod("x");
    no_uid.metadata.uid = None;
    assert!(matches!(
        q.add(Arc::new(no_uid)),
        Err(Error::InvalidPod { .. })
    ));
    let mut no_name = pod("x");
    no_name.metadata.name = None;
    assert!(matches!(
        q.add(Arc::new(no_name.clone())),
        Err(Error::InvalidPod { .. })
    ));
    assert!(
        q.update(&Arc::new(pod("x")), Arc::new(no_name.clone()))
            .is_err()
    );
    assert!(!q.delete(&no_name));
    assert_eq!(q.metrics().pending.total(), 0);
}

#[test]
fn a_pod_already_queued_is_not_taken_back_but_its_flight_ends() {
    let (q, _) = queue();
    q.add(Arc::new(pod("a"))).unwrap();
    let a = q.try_pop().unwrap();
    // The informer re-adds it while it is in flight.
    q.add(Arc::new(pod("a"))).unwrap();
    let err = q.add_unschedulable_if_not_present(a).unwrap_err();
    assert_eq!(
        err,
        Error::AlreadyPresent {
            pod: "default/a".into(),
            queue: QueueName::Active
        }
    );
    assert_eq!(q.metrics().in_flight_pods, 0);
    assert_eq!(
        q.try_pop().unwrap().attempts,
        1,
        "the re-added copy is a fresh pod"
    );
}

#[test]
fn a_popped_duplicate_of_an_in_flight_pod_is_discarded() {
    let (q, _) = queue();
    q.add(Arc::new(pod("a"))).unwrap();
    let _a = q.try_pop().unwrap();
    q.add(Arc::new(pod("a"))).unwrap();
    assert!(
        q.try_pop().is_none(),
        "the copy is dropped, the attempt in flight decides"
    );
    assert_eq!(q.metrics().pending.total(), 0);
}

#[test]
fn done_ends_the_flight() {
    let (q, _) = queue();
    q.add(Arc::new(pod("a"))).unwrap();
    let a = q.try_pop().unwrap();
    assert_eq!(names(&q.in_flight_pods()), ["a"]);
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
    assert_eq!(q.metrics().in_flight_events, 1);
    q.done(a.uid());
    q.done(a.uid());
    let m = q.metrics();
    assert_eq!(
        (m.in_flight_pods, m.in_flight_events, m.scheduling_cycle),
        (0, 0, 1)
    );
}

#[test]
fn metrics_count_incoming_pods_by_queue_and_event() {
    let (q, _) = queue();
    q.add(Arc::new(pod("a"))).unwrap();
    q.add(Arc::new(gated(pod("g")))).unwrap();
    pop_and_fail(&q, "a", &[QUEUES_ON_NODE_ADD]);
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
    let mut incoming: Vec<(String, String, u64)> = q
        .metrics()
        .incoming
        .into_iter()
        .map(|i| (i.queue.to_string(), i.event, i.count))
        .collect();
    incoming.sort();
    assert_eq!(
        incoming,
        [
            ("active".into(), "UnschedulablePodAdd".into(), 1),
            ("backoff".into(), "NodeAdd".into(), 1),
            ("unschedulable".into(), "ScheduleAttemptFailure".into(), 1),
            ("unschedulable".into(), "UnschedulablePodAdd".into(), 1),
        ]
    );
}

#[test]
fn bad_configuration_is_refused() {
    struct NotPreEnqueue;
    impl ksched_framework::Plugin for NotPreEnqueue {
        fn name(&self) -> &str {
            "NotPreEnqueue"
        }
    }
    let err = PriorityQueue::new(
        QueueConfig::default().with_pre_enqueue(PROFILE, vec![Arc::new(NotPreEnqueue)]),
    )
    .unwrap_err();
    assert!(matches!(err, Error::NotPreEnqueue { .. }));
    let mut config = QueueConfig::default();
    for i in 0..200 {
        config = config.with_hints(
            PROFILE,
            format!("p{i}"),
            [ClusterEventWithHint::new(well_known::NODE_ADD)],
        );
    }
    assert!(matches!(
        PriorityQueue::new(config),
        Err(Error::TooManyPlugins { .. })
    ));
}

#[test]
fn pods_of_unknown_profiles_move_on_any_event() {
    let (q, _) = queue();
    let mut other = pod("other");
    other.spec.get_or_insert_default().scheduler_name = Some("someone-else".into());
    q.add(Arc::new(other)).unwrap();
    pop_and_fail(&q, "other", &[DEAF]);
    q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
    assert_eq!(q.metrics().pending.backoff, 1);
}
