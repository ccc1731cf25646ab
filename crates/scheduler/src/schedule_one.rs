//! `schedule_one`: one pod through its profile's scheduling cycle, then its binding cycle — in a
//! task of its own from its first wait on (upstream `schedule_one.go`).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Waker},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    Code, CycleState, EventType, Framework, NominatingInfo, NominatingMode, PodInfo, PodNominator,
    QueuedPodInfo, Status, pod_key,
    runtime::{ScheduleError, ScheduleResult},
};
use rand::Rng;

use crate::{pod_status, scheduler::Inner};

/// Share of cycles whose per-plugin durations are recorded (upstream samples 10 %).
const PLUGIN_METRICS_SAMPLE_PERCENT: u32 = 10;

/// How a failed attempt is reported.
struct Failure {
    status: Status,
    /// `Unschedulable` or `SchedulerError`, the PodScheduled condition's reason.
    reason: &'static str,
    message: String,
    nominating: Option<NominatingInfo>,
    unschedulable_plugins: std::collections::BTreeSet<String>,
    pending_plugins: std::collections::BTreeSet<String>,
}

impl Failure {
    fn error(status: Status) -> Self {
        let message = status.message();
        Self {
            status,
            reason: pod_status::REASON_SCHEDULER_ERROR,
            message,
            nominating: None,
            unschedulable_plugins: Default::default(),
            pending_plugins: Default::default(),
        }
    }

    fn from_status(status: Status) -> Self {
        if status.is_rejected() {
            let mut f = Self::error(status);
            f.reason = pod_status::REASON_UNSCHEDULABLE;
            if let Some(p) = f.status.plugin() {
                if f.status.code() == Code::Pending {
                    f.pending_plugins.insert(p.to_owned());
                } else {
                    f.unschedulable_plugins.insert(p.to_owned());
                }
            }
            f
        } else {
            Self::error(status)
        }
    }
}

impl Inner {
    /// Pops pods and schedules them one at a time until the queue closes.
    pub(crate) async fn scheduling_loop(self: &Arc<Self>) {
        while let Some(qpi) = self.queue.pop().await {
            self.schedule_one(qpi).await;
        }
    }

    /// One pod: scheduling cycle, assume, Reserve, Permit; binding continues in its own task.
    pub(crate) async fn schedule_one(self: &Arc<Self>, qpi: QueuedPodInfo) {
        let pod = qpi.pod_info.pod().clone();
        let Some(fw) = self.profiles.get(scheduler_name(&pod)).cloned() else {
            tracing::error!(pod = %qpi.key(), scheduler = scheduler_name(&pod), "no profile for the pod's schedulerName");
            self.queue.done(qpi.uid());
            return;
        };
        if self.skip_pod_schedule(&pod) {
            self.queue.done(qpi.uid());
            return;
        }
        let start = Instant::now();
        let mut state = CycleState::new();
        state.set_record_plugin_metrics(
            rand::rng().random_range(0..100) < PLUGIN_METRICS_SAMPLE_PERCENT,
        );

        self.install_snapshot();
        let result = fw.schedule_pod(&mut state, &pod).await;
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                let failure = self.scheduling_failure(&fw, &mut state, &pod, e).await;
                let result = if failure.reason == pod_status::REASON_UNSCHEDULABLE {
                    "unschedulable"
                } else {
                    "error"
                };
                self.metrics.observe_attempt(
                    result,
                    fw.profile_name(),
                    start.elapsed().as_secs_f64(),
                );
                self.handle_scheduling_failure(&fw, qpi, failure);
                return;
            }
        };
        // Assume: the pod counts on its node from now on, so the next cycle sees it.
        let assumed_info = qpi.pod_info.with_node_name(&result.suggested_host);
        let assumed = assumed_info.pod().clone();
        if let Err(e) = self.cache.assume_pod_info(assumed_info) {
            self.metrics
                .observe_attempt("error", fw.profile_name(), start.elapsed().as_secs_f64());
            self.handle_scheduling_failure(
                &fw,
                qpi,
                Failure::error(Status::error(format!("assuming pod: {e}"))),
            );
            return;
        }
        // Borrowed: `result` moves into the binding task only after Reserve and Permit.
        let host = result.suggested_host.as_str();
        let s = fw
            .run_reserve_plugins_reserve(&mut state, &assumed, host)
            .await;
        if !s.is_success() {
            fw.run_reserve_plugins_unreserve(&mut state, &assumed, host)
                .await;
            self.forget(&assumed);
            self.metrics.observe_attempt(
                result_label(&s),
                fw.profile_name(),
                start.elapsed().as_secs_f64(),
            );
            self.handle_scheduling_failure(&fw, qpi, Failure::from_status(s));
            return;
        }
        let s = fw.run_permit_plugins(&state, &assumed, host).await;
        if !s.is_success() && !s.is_wait() {
            fw.run_reserve_plugins_unreserve(&mut state, &assumed, host)
                .await;
            self.forget(&assumed);
            self.metrics.observe_attempt(
                result_label(&s),
                fw.profile_name(),
                start.elapsed().as_secs_f64(),
            );
            self.handle_scheduling_failure(&fw, qpi, Failure::from_status(s));
            return;
        }
        // The binding cycle runs on its own; the loop goes on to the next pod.
        let this = self.clone();
        self.metrics.binding_in_flight.inc();
        let binding = Box::pin(async move {
            let gauge = this.metrics.binding_in_flight.clone();
            this.binding_cycle(fw, state, qpi, assumed, result, start)
                .await;
            gauge.dec();
        });
        self.start_binding(binding);
    }

    /// Starts a binding cycle: polls it once here and spawns it only if it has to wait.
    ///
    /// Upstream starts the binding cycle in a goroutine, so the loop never waits for the
    /// apiserver (or a Permit that says Wait). One poll keeps that: it runs the cycle only up to
    /// its first wait — the binder's request handed to the client, a waiting Permit — and the
    /// task spawned then takes it from there, while the loop goes on at once. A cycle that
    /// never waits (in-memory Bind plugins, the simulator) completes inside that poll, which is
    /// one of the interleavings the goroutine allows, and saves a task, the wake-up of a tokio
    /// worker and two context switches per pod. The poll has no waker: the spawned task polls
    /// the future again at once, which re-registers whatever it waits on with the task's own
    /// waker (futures must honour the waker of their latest poll).
    fn start_binding<F>(&self, mut binding: Pin<Box<F>>)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut cx = Context::from_waker(Waker::noop());
        if binding.as_mut().poll(&mut cx).is_pending() {
            self.bindings.spawn(binding);
        }
    }

    /// Wait on Permit → PreBind → Bind → finish binding → PostBind; any failure undoes the
    /// assumption and requeues the pod.
    async fn binding_cycle(
        self: Arc<Self>,
        fw: Arc<Framework>,
        mut state: CycleState,
        qpi: QueuedPodInfo,
        assumed: Arc<Pod>,
        result: ScheduleResult,
        start: Instant,
    ) {
        let host = result.suggested_host.as_str();
        let mut status = fw.wait_on_permit(&assumed).await;
        if status.is_success() {
            status = fw
                .run_pre_bind_pre_flights(&mut state, &assumed, host)
                .await;
        }
        if status.is_success() {
            status = fw.run_pre_bind_plugins(&state, &assumed, host).await;
        }
        if status.is_success() {
            status = fw.run_bind_plugins(&state, &assumed, host).await;
            if status.is_skip() {
                status = Status::error("no Bind plugin bound the pod");
            }
        }
        if !status.is_success() {
            fw.run_reserve_plugins_unreserve(&mut state, &assumed, host)
                .await;
            self.forget(&assumed);
            self.metrics.observe_attempt(
                result_label(&status),
                fw.profile_name(),
                start.elapsed().as_secs_f64(),
            );
            let mut failure = Failure::from_status(status);
            if failure.status.code() == Code::UnschedulableAndUnresolvable
                && failure.status.plugin() == Some("DefaultBinder")
            {
                // Bound elsewhere or deleted (the binder checked): nothing to requeue; the
                // informer delivers the pod's real state.
                tracing::info!(pod = %qpi.key(), reason = %failure.message, "binding gave up");
                self.queue.done(qpi.uid());
                return;
            }
            failure.message = format!("binding rejected: {}", failure.message);
            self.handle_scheduling_failure(&fw, qpi, failure);
            return;
        }
        self.cache.finish_binding(&assumed);
        let elapsed = start.elapsed().as_secs_f64();
        self.metrics
            .observe_attempt("scheduled", fw.profile_name(), elapsed);
        self.metrics
            .pod_scheduling_attempts
            .observe(f64::from(qpi.attempts.max(1)));
        if let Some(first) = qpi.initial_attempt_timestamp {
            self.metrics
                .observe_sli(qpi.attempts.max(1), first.elapsed().as_secs_f64());
        }
        let note = format!("Successfully assigned {} to {host}", pod_key(&assumed));
        fw.handle().event_recorder().record(
            &assumed,
            EventType::Normal,
            "Scheduled",
            "Binding",
            &note,
        );
        tracing::debug!(pod = %qpi.key(), node = host, evaluated = result.evaluated_nodes, feasible = result.feasible_nodes, "bound");
        fw.run_post_bind_plugins(&state, &assumed, host).await;
        self.queue.done(qpi.uid());
    }

    /// PostFilter on a FitError, and the failure to report.
    async fn scheduling_failure(
        &self,
        fw: &Arc<Framework>,
        state: &mut CycleState,
        pod: &Pod,
        err: ScheduleError,
    ) -> Failure {
        match err {
            ScheduleError::NoNodesAvailable => {
                let status = Status::unresolvable("no nodes available to schedule pods");
                let mut f = Failure::from_status(status);
                f.message = "0/0 nodes are available: no nodes available to schedule pods.".into();
                f
            }
            ScheduleError::Internal(s) => Failure::error(s),
            ScheduleError::Fit(mut fit) => {
                let mut nominating = None;
                if fw.has_post_filter_plugins() {
                    let (res, s) = fw
                        .run_post_filter_plugins(state, pod, &fit.diagnosis.node_to_status)
                        .await;
                    if s.is_error() {
                        tracing::warn!(pod = %fit.pod, error = %s, "PostFilter failed");
                    }
                    let msg = s.message();
                    if !msg.is_empty() {
                        fit.diagnosis.post_filter_msg = Some(msg);
                    }
                    nominating = res.and_then(|r| r.nominating_info);
                }
                Failure {
                    status: Status::unschedulable(fit.to_string()),
                    reason: pod_status::REASON_UNSCHEDULABLE,
                    message: fit.to_string(),
                    nominating,
                    unschedulable_plugins: fit.diagnosis.unschedulable_plugins.clone(),
                    pending_plugins: fit.diagnosis.pending_plugins.clone(),
                }
            }
        }
    }

    /// Requeues the pod (backoff / unschedulable per its status), records a `FailedScheduling`
    /// event and sets `PodScheduled=False` (upstream `handleSchedulingFailure`).
    fn handle_scheduling_failure(&self, fw: &Arc<Framework>, mut qpi: QueuedPodInfo, f: Failure) {
        let key = qpi.key().to_owned();
        tracing::debug!(pod = %key, reason = f.reason, message = %f.message, "scheduling attempt failed");
        // Requeue the latest version of the pod, unless it is gone or bound meanwhile.
        let Some(latest) = self
            .pods
            .get(&key)
            .filter(|p| p.metadata.uid == qpi.pod().metadata.uid)
        else {
            tracing::debug!(pod = %key, "pod deleted during its scheduling attempt; dropping it");
            self.queue.done(qpi.uid());
            return;
        };
        if latest
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
        {
            self.queue.done(qpi.uid());
            return;
        }
        qpi.pod_info = Arc::new(PodInfo::new(latest.clone()));
        if f.status.is_error() {
            qpi.unschedulable_plugins.clear();
            qpi.pending_plugins.clear();
        } else {
            qpi.unschedulable_plugins = f.unschedulable_plugins.clone();
            qpi.pending_plugins = f.pending_plugins.clone();
        }
        if let Err(e) = self.queue.add_unschedulable_if_not_present(qpi) {
            tracing::error!(pod = %key, error = %e, "requeueing the pod");
        }
        let nominated = match &f.nominating {
            Some(NominatingInfo {
                nominated_node_name,
                mode: NominatingMode::Override,
            }) => {
                if nominated_node_name.is_empty() {
                    self.queue.delete_nominated_pod_if_exists(&latest);
                } else {
                    self.queue.add_nominated_pod(
                        Arc::new(PodInfo::new(latest.clone())),
                        Some(nominated_node_name.clone()),
                    );
                }
                Some(nominated_node_name.clone())
            }
            _ => None,
        };
        fw.handle().event_recorder().record(
            &latest,
            EventType::Warning,
            "FailedScheduling",
            "Scheduling",
            &f.message,
        );
        pod_status::update_async(
            self.client.clone(),
            latest,
            f.reason,
            f.message,
            nominated,
            &self.status_updates,
        );
    }

    fn forget(&self, assumed: &Pod) {
        if let Err(e) = self.cache.forget_pod(assumed) {
            tracing::error!(pod = %pod_key(assumed), error = %e, "forgetting the assumed pod");
        }
    }

    /// Pods being deleted, or already assumed, are not scheduled (upstream `skipPodSchedule`).
    fn skip_pod_schedule(&self, pod: &Pod) -> bool {
        if pod.metadata.deletion_timestamp.is_some() {
            return true;
        }
        self.cache.is_assumed_pod(pod)
    }

    /// Brings the shared snapshot up to date and hands it to every profile's handle.
    fn install_snapshot(&self) {
        let mut guard = self.snapshot.lock();
        // Drop the handles' references first so the snapshot can be updated in place.
        for fw in self.profiles.values() {
            fw.handle().set_snapshot(self.empty_snapshot.clone());
        }
        let snap = Arc::make_mut(&mut guard);
        if let Err(e) = self.cache.update_snapshot(snap) {
            tracing::error!(error = %e, "updating the snapshot");
        }
        for fw in self.profiles.values() {
            fw.handle().set_snapshot(guard.clone());
        }
    }
}

fn result_label(s: &Status) -> &'static str {
    if s.is_rejected() {
        "unschedulable"
    } else {
        "error"
    }
}

fn scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or("default-scheduler")
}

/// How long in-flight bindings get to finish at shutdown.
pub(crate) const BINDING_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
