//! Profiles, their PreEnqueue plugins and queueing hints, and the decision upstream calls
//! `isPodWorthRequeuing`: may this event make that rejected pod schedulable?
//!
//! Within a profile every plugin that registers events gets a small id, and a pod's rejector
//! plugins are kept as a bit set of those ids. For an incoming event the queue computes once
//! which registrations match and which plugins they belong to, so deciding for each of
//! thousands of unschedulable pods is a bit test, plus the hints of the few plugins that
//! rejected it.

use std::{collections::HashMap, sync::Arc};

use k8s_openapi::api::core::v1::Pod;
use ksched_framework::{
    ClusterEvent, ClusterEventWithHint, ClusterObject, Plugin, PodInfo, QueuedPodInfo, QueueingHint,
};

use crate::{Error, Result};

/// Index of a profile; [`Profiles::UNKNOWN`] for pods of a scheduler name not configured.
pub(crate) type ProfileId = u16;

/// A profile's plugins that register events, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PluginMask(u64);

impl PluginMask {
    pub(crate) const CAPACITY: usize = 64;

    fn insert(&mut self, id: u16) {
        self.0 |= 1 << id;
    }

    pub(crate) fn contains(self, id: u16) -> bool {
        self.0 & (1 << id) != 0
    }

    fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}

/// A pod's rejector plugins in the terms of its profile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rejectors {
    unschedulable: PluginMask,
    pending: PluginMask,
    /// Some plugin rejected the pod, registered events or not (none: it failed with an error).
    any: bool,
    /// Some plugin returned Pending.
    any_pending: bool,
    /// The gating PreEnqueue plugin, when the pod is gated and that plugin registers events.
    gating: Option<u16>,
}

impl Rejectors {
    /// Unschedulable and Pending plugins together.
    fn relevant(&self) -> PluginMask {
        PluginMask(self.unschedulable.0 | self.pending.0)
    }
}

/// What to do with a rejected pod (upstream `queueingStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Strategy {
    /// Leave it in unschedulablePods.
    Skip,
    /// To backoffQ while backing off, else activeQ.
    AfterBackoff,
    /// Straight to activeQ (a Pending plugin said Queue).
    Immediately,
}

/// Upstream `MatchClusterEvents`: a wildcard registration matches everything; otherwise the
/// resources match, the actions overlap and the incoming action is no broader than the
/// registered one, so a generic pod update (every update bit) reaches only plugins that
/// registered the generic update, not those interested in, say, label changes alone.
pub(crate) fn event_matches(registered: &ClusterEvent, incoming: &ClusterEvent) -> bool {
    registered.is_wildcard()
        || (registered.resource.matches(&incoming.resource)
            && registered.action.intersects(incoming.action)
            && registered.action.contains(incoming.action))
}

struct Registration {
    plugin: u16,
    hint: ClusterEventWithHint,
}

/// One profile's PreEnqueue plugins and queueing hints.
pub(crate) struct Profile {
    pub(crate) pre_enqueue: Vec<Arc<dyn Plugin>>,
    plugin_ids: HashMap<String, u16>,
    registrations: Vec<Registration>,
}

/// The registrations that match one incoming event in one profile.
pub(crate) struct Matched<'a> {
    plugins: PluginMask,
    hints: Vec<(u16, &'a ClusterEventWithHint)>,
}

impl Profile {
    fn new(
        name: &str,
        pre_enqueue: Vec<Arc<dyn Plugin>>,
        hints: Vec<(String, ClusterEventWithHint)>,
    ) -> Result<Self> {
        if let Some(p) = pre_enqueue.iter().find(|p| p.as_pre_enqueue().is_none()) {
            return Err(Error::NotPreEnqueue {
                profile: name.to_owned(),
                plugin: p.name().to_owned(),
            });
        }
        let mut plugin_ids: HashMap<String, u16> = HashMap::new();
        let mut registrations = Vec::with_capacity(hints.len());
        for (plugin, hint) in hints {
            let next = plugin_ids.len();
            let id = *plugin_ids.entry(plugin).or_insert(next as u16);
            if plugin_ids.len() > PluginMask::CAPACITY {
                return Err(Error::TooManyPlugins {
                    profile: name.to_owned(),
                    count: plugin_ids.len(),
                    max: PluginMask::CAPACITY,
                });
            }
            registrations.push(Registration { plugin: id, hint });
        }
        Ok(Self {
            pre_enqueue,
            plugin_ids,
            registrations,
        })
    }

    fn ids_of<'a>(&self, plugins: impl IntoIterator<Item = &'a String>) -> PluginMask {
        let mut mask = PluginMask::default();
        for id in plugins
            .into_iter()
            .filter_map(|p| self.plugin_ids.get(p.as_str()))
        {
            mask.insert(*id);
        }
        mask
    }

    /// The registrations matching `event`.
    pub(crate) fn matching(&self, event: &ClusterEvent) -> Matched<'_> {
        let mut matched = Matched {
            plugins: PluginMask::default(),
            hints: Vec::new(),
        };
        for r in self
            .registrations
            .iter()
            .filter(|r| event_matches(&r.hint.event, event))
        {
            matched.plugins.insert(r.plugin);
            matched.hints.push((r.plugin, &r.hint));
        }
        matched
    }
}

/// Every profile, by scheduler name.
pub(crate) struct Profiles {
    list: Vec<Profile>,
    by_name: HashMap<String, ProfileId>,
    /// The name of the only profile, when there is exactly one (the common case): a string
    /// comparison instead of a hash lookup on every add.
    only: Option<String>,
}

impl Profiles {
    /// Id of pods whose scheduler name has no profile: no PreEnqueue plugins, no hints, so
    /// every event moves them (upstream logs this as a bug and requeues after backoff).
    pub(crate) const UNKNOWN: ProfileId = ProfileId::MAX;

    pub(crate) fn new(
        mut pre_enqueue: HashMap<String, Vec<Arc<dyn Plugin>>>,
        mut hints: HashMap<String, Vec<(String, ClusterEventWithHint)>>,
    ) -> Result<Self> {
        let mut names: Vec<String> = pre_enqueue.keys().chain(hints.keys()).cloned().collect();
        names.sort();
        names.dedup();
        let mut list = Vec::with_capacity(names.len());
        let mut by_name = HashMap::with_capacity(names.len());
        for name in names {
            let profile = Profile::new(
                &name,
                pre_enqueue.remove(&name).unwrap_or_default(),
                hints.remove(&name).unwrap_or_default(),
            )?;
            by_name.insert(name, list.len() as ProfileId);
            list.push(profile);
        }
        let only = if by_name.len() == 1 {
            by_name.keys().next().cloned()
        } else {
            None
        };
        Ok(Self {
            list,
            by_name,
            only,
        })
    }

    /// The profile of `pod`: its `spec.schedulerName`, `default-scheduler` when unset (read
    /// from what `PodInfo` keeps, not from the pod).
    pub(crate) fn id_of(&self, pod: &PodInfo) -> ProfileId {
        let name = Some(pod.scheduler_name()).filter(|n| !n.is_empty());
        let name = name.unwrap_or(DEFAULT_SCHEDULER_NAME);
        match &self.only {
            Some(only) if only == name => 0,
            Some(_) => Self::UNKNOWN,
            None => self.by_name.get(name).copied().unwrap_or(Self::UNKNOWN),
        }
    }

    pub(crate) fn get(&self, id: ProfileId) -> Option<&Profile> {
        self.list.get(usize::from(id))
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether any plugin of any profile registered an event matching `event` (wildcard
    /// events always are: they move every pod).
    pub(crate) fn is_event_of_interest(&self, event: &ClusterEvent) -> bool {
        event.is_wildcard()
            || self.list.iter().any(|p| {
                p.registrations
                    .iter()
                    .any(|r| event_matches(&r.hint.event, event))
            })
    }

    /// `info`'s rejector plugins as ids of its profile.
    pub(crate) fn rejectors(&self, profile: ProfileId, info: &QueuedPodInfo) -> Rejectors {
        let mut r = Rejectors {
            any: info.has_rejector_plugins(),
            any_pending: !info.pending_plugins.is_empty(),
            ..Rejectors::default()
        };
        if let Some(p) = self.get(profile) {
            r.unschedulable = p.ids_of(&info.unschedulable_plugins);
            r.pending = p.ids_of(&info.pending_plugins);
            r.gating = info
                .gating_plugin
                .as_ref()
                .and_then(|g| p.plugin_ids.get(g.as_str()).copied());
        }
        r
    }
}

/// The scheduler name of pods that do not name one.
pub(crate) const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Whether a gated pod is worth looking at for `event`: only when its gating plugin
/// registered a matching event (upstream `GatingPluginEvents`).
pub(crate) fn gate_may_open(rejectors: &Rejectors, matched: Option<&Matched<'_>>) -> bool {
    match (rejectors.gating, matched) {
        (Some(id), Some(m)) => m.plugins.contains(id),
        _ => false,
    }
}

/// What [`triage`] can tell from a pod's rejector plugins alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Triage {
    /// Decided without looking at the pod.
    Decided(Strategy),
    /// Some hint must see the pod (or, for a wildcard event carrying a pod, its UID).
    NeedsPod,
}

/// The part of upstream `isPodWorthRequeuing` that needs no pod: pods rejected by no plugin
/// (errors) and wildcard events always move; a pod none of whose rejector plugins registered
/// a matching event stays. Reaching the pod is a cache miss per pod when MoveAll walks
/// thousands of them, so it is left to [`run_hints`], for the pods that need it.
pub(crate) fn triage(
    rejectors: &Rejectors,
    matched: Option<&Matched<'_>>,
    event: &ClusterEvent,
    new: Option<&ClusterObject>,
) -> Triage {
    if !rejectors.any {
        return Triage::Decided(Strategy::AfterBackoff);
    }
    if event.is_wildcard() {
        return match new {
            // ForceActivate carrying a pod is for that pod only.
            Some(_) => Triage::NeedsPod,
            None => Triage::Decided(Strategy::AfterBackoff),
        };
    }
    let Some(matched) = matched else {
        return Triage::Decided(Strategy::AfterBackoff);
    };
    if !rejectors.relevant().intersects(matched.plugins) {
        return Triage::Decided(Strategy::Skip);
    }
    Triage::NeedsPod
}

/// The rest of upstream `isPodWorthRequeuing`, for a pod [`triage`] could not decide: runs
/// the hints of its rejector plugins registered for `event`. A Queue from a Pending plugin
/// means activeQ now, from any other rejector activeQ or backoffQ; all QueueSkip leaves the
/// pod where it is.
pub(crate) fn run_hints(
    rejectors: &Rejectors,
    matched: Option<&Matched<'_>>,
    event: &ClusterEvent,
    pod: &Pod,
    old: Option<&ClusterObject>,
    new: Option<&ClusterObject>,
) -> Strategy {
    if event.is_wildcard() {
        let same_pod = new
            .and_then(ClusterObject::as_pod)
            .is_some_and(|p| p.metadata.uid.is_some() && p.metadata.uid == pod.metadata.uid);
        return if same_pod {
            Strategy::AfterBackoff
        } else {
            Strategy::Skip
        };
    }
    let Some(matched) = matched else {
        return Strategy::AfterBackoff;
    };
    let relevant = rejectors.relevant();
    let mut strategy = Strategy::Skip;
    for (plugin, hint) in matched.hints.iter().filter(|(p, _)| relevant.contains(*p)) {
        if hint.evaluate(pod, old, new) == QueueingHint::QueueSkip {
            continue;
        }
        if rejectors.pending.contains(*plugin) {
            return Strategy::Immediately;
        }
        if !rejectors.any_pending {
            return Strategy::AfterBackoff;
        }
        // A Pending plugin may still say Queue, which would skip the backoff.
        strategy = Strategy::AfterBackoff;
    }
    strategy
}

/// Upstream `isPodWorthRequeuing`: [`triage`], then [`run_hints`] if that cannot decide.
pub(crate) fn worth_requeuing(
    rejectors: &Rejectors,
    matched: Option<&Matched<'_>>,
    event: &ClusterEvent,
    pod: &PodInfo,
    old: Option<&ClusterObject>,
    new: Option<&ClusterObject>,
) -> Strategy {
    match triage(rejectors, matched, event, new) {
        Triage::Decided(strategy) => strategy,
        Triage::NeedsPod => run_hints(rejectors, matched, event, pod.pod(), old, new),
    }
}

/// Upstream `determineSchedulingHintForInFlightPod`: the strategy for a pod coming back from
/// a failed attempt, from the events recorded while it was in flight.
pub(crate) fn replay<'e>(
    rejectors: &Rejectors,
    profile: Option<&Profile>,
    pod: &PodInfo,
    events: impl IntoIterator<
        Item = (
            &'e ClusterEvent,
            Option<&'e ClusterObject>,
            Option<&'e ClusterObject>,
        ),
    >,
) -> Strategy {
    if !rejectors.any {
        // An error, not a rejection: retry after the error backoff whatever happened.
        return Strategy::AfterBackoff;
    }
    let mut strategy = Strategy::Skip;
    for (event, old, new) in events {
        let matched = profile.map(|p| p.matching(event));
        match worth_requeuing(rejectors, matched.as_ref(), event, pod, old, new) {
            Strategy::Skip => {}
            Strategy::Immediately => return Strategy::Immediately,
            Strategy::AfterBackoff if !rejectors.any_pending => return Strategy::AfterBackoff,
            Strategy::AfterBackoff => strategy = Strategy::AfterBackoff,
        }
    }
    strategy
}

#[cfg(test)]
mod tests {
    use ksched_framework::{ActionType, EventResource, events::well_known};

    use super::*;

    #[test]
    fn generic_update_reaches_only_generic_registrations() {
        let label = ClusterEvent::new(EventResource::Pod, ActionType::UPDATE_POD_LABEL);
        let generic = ClusterEvent::new(EventResource::Pod, ActionType::UPDATE);
        let other_update = ClusterEvent::new(EventResource::UnschedulablePod, ActionType::UPDATE);
        let label_update = ClusterEvent::new(
            EventResource::UnschedulablePod,
            ActionType::UPDATE_POD_LABEL,
        );
        assert!(!event_matches(&label, &other_update));
        assert!(event_matches(&generic, &other_update));
        assert!(event_matches(&label, &label_update));
        assert!(event_matches(&generic, &label_update));
        assert!(event_matches(
            &ClusterEvent::wildcard(),
            &well_known::NODE_ADD
        ));
        assert!(!event_matches(
            &well_known::NODE_ADD,
            &well_known::UNSCHEDULABLE_TIMEOUT
        ));
    }
}
