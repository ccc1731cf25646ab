//! Several tasks add, update, delete and pop thousands of pods at once; every pod must end
//! up scheduled exactly once or deleted — none lost, none duplicated.

mod common;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use common::*;
use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{PodInfo, events::well_known};
use ksched_queue::{FakeClock, PriorityQueue};
use parking_lot::Mutex;

const PODS: usize = 6000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Pending,
    Scheduled,
    Deleted,
}

/// What the scheduler's informer and binder know about each pod.
struct Pods {
    pods: Vec<Arc<Pod>>,
    fate: Vec<Fate>,
    /// Whether the informer delivered the pod's Add (updates and deletes come after it).
    added: Vec<bool>,
    scheduled: Vec<u32>,
    settled: usize,
}

/// A tiny deterministic generator per task (no shared RNG to contend on).
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

fn index(pod: &Pod) -> usize {
    pod.metadata
        .name
        .as_deref()
        .and_then(|n| n.strip_prefix("s-"))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_updates_deletes_and_pops_account_for_every_pod() {
    let (q, clock) = queue();
    let all: Vec<Arc<Pod>> = (0..PODS)
        .map(|i| Arc::new(with_priority(pod(&format!("s-{i}")), (i % 7) as i32)))
        .collect();
    let state = Arc::new(Mutex::new(Pods {
        pods: all.clone(),
        fate: vec![Fate::Pending; PODS],
        added: vec![false; PODS],
        scheduled: vec![0; PODS],
        settled: 0,
    }));
    let added = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));

    let mut tasks = Vec::new();
    // Two informers adding pods.
    for half in 0..2 {
        let (q, added, state) = (q.clone(), added.clone(), state.clone());
        let pods: Vec<Arc<Pod>> = all.iter().skip(half).step_by(2).cloned().collect();
        tasks.push(tokio::spawn(async move {
            for (n, p) in pods.into_iter().enumerate() {
                {
                    let mut st = state.lock();
                    st.added[index(&p)] = true;
                    q.add(p).unwrap();
                }
                added.fetch_add(1, Ordering::SeqCst);
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    // Updates (labels, priorities) and deletions of pods not yet placed.
    for (seed, deletes) in [(7u64, false), (11, true)] {
        let (q, state, stop, added, all) = (
            q.clone(),
            state.clone(),
            stop.clone(),
            added.clone(),
            all.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(seed);
            let mut deleted = 0;
            while !stop.load(Ordering::SeqCst) {
                let upto = added.load(Ordering::SeqCst) as usize;
                if upto == 0 {
                    tokio::task::yield_now().await;
                    continue;
                }
                let i = index(&all[rng.next(upto)]);
                {
                    let mut st = state.lock();
                    if st.added[i] && st.fate[i] == Fate::Pending {
                        if deletes && deleted < PODS / 10 {
                            q.delete(&st.pods[i]);
                            st.fate[i] = Fate::Deleted;
                            st.settled += 1;
                            deleted += 1;
                        } else if !deletes {
                            let old = st.pods[i].clone();
                            let new = Arc::new(with_label(
                                (*old).clone(),
                                "rev",
                                &rng.next(1000).to_string(),
                            ));
                            q.update(&old, new.clone()).unwrap();
                            st.pods[i] = new;
                        }
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    // Cluster events and the passage of time.
    {
        let (q, clock, stop): (Arc<PriorityQueue>, Arc<FakeClock>, _) =
            (q.clone(), clock.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(3);
            while !stop.load(Ordering::SeqCst) {
                clock.advance(Duration::from_millis(200 + rng.next(20_000) as u64));
                q.flush_backoff_q_completed();
                q.flush_unschedulable_pods_leftover();
                q.move_all_to_active_or_backoff_queue(&well_known::NODE_ADD, None, None, None);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    // Schedulers: succeed, or fail with a plugin that listens to NodeAdd, one that listens to
    // nothing (the leftover flush frees it), or an error.
    let mut poppers = Vec::new();
    for seed in [17u64, 19, 23] {
        let (q, state, attempts) = (q.clone(), state.clone(), attempts.clone());
        poppers.push(tokio::spawn(async move {
            let mut rng = Rng(seed);
            while let Some(mut info) = q.pop().await {
                attempts.fetch_add(1, Ordering::SeqCst);
                let i = index(info.pod());
                {
                    let mut st = state.lock();
                    match st.fate[i] {
                        Fate::Deleted => q.done(info.uid()),
                        Fate::Scheduled => panic!("{} popped after it was scheduled", info.key()),
                        Fate::Pending if rng.next(10) < 6 => {
                            q.done(info.uid());
                            st.fate[i] = Fate::Scheduled;
                            st.scheduled[i] += 1;
                            st.settled += 1;
                        }
                        Fate::Pending => {
                            info.pod_info = Arc::new(PodInfo::new(st.pods[i].clone()));
                            match rng.next(3) {
                                0 => info.unschedulable_plugins.insert(QUEUES_ON_NODE_ADD.into()),
                                1 => info.unschedulable_plugins.insert(DEAF.into()),
                                _ => false,
                            };
                            q.add_unschedulable_if_not_present(info)
                                .expect("the queue does not hold an in-flight pod");
                        }
                    }
                }
                if rng.next(8) == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }

    let finished = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if state.lock().settled == PODS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let metrics = q.metrics();
    // A popper may still hold a pod deleted while in flight; it ends that flight itself.
    for _ in 0..1000 {
        if q.metrics().in_flight_pods == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let quiet = q.metrics();
    stop.store(true, Ordering::SeqCst);
    q.close();
    for t in tasks.into_iter().chain(poppers) {
        t.await.unwrap();
    }
    let st = state.lock();
    let unsettled: Vec<usize> = (0..PODS).filter(|i| st.fate[*i] == Fate::Pending).collect();
    assert!(
        finished.is_ok(),
        "timed out; {} pods never scheduled, queue: {metrics:?}",
        unsettled.len()
    );
    assert!(unsettled.is_empty());
    let mut by_fate: HashMap<&str, usize> = HashMap::new();
    for i in 0..PODS {
        let expected = u32::from(st.fate[i] == Fate::Scheduled);
        assert_eq!(
            st.scheduled[i], expected,
            "pod {i} scheduled {} times",
            st.scheduled[i]
        );
        *by_fate
            .entry(if expected == 1 {
                "scheduled"
            } else {
                "deleted"
            })
            .or_default() += 1;
    }
    assert_eq!(by_fate.values().sum::<usize>(), PODS);
    assert_eq!(
        metrics.pending.total(),
        0,
        "nothing left behind: {metrics:?}"
    );
    assert_eq!(quiet.pending.total(), 0);
    assert_eq!(quiet.in_flight_pods, 0);
    assert_eq!(quiet.in_flight_events, 0);
    assert!(
        attempts.load(Ordering::SeqCst) > PODS as u64,
        "failures were retried"
    );
    eprintln!("{by_fate:?}, {} attempts", attempts.load(Ordering::SeqCst));
}
