//! Taints and tolerations (upstream `component-helpers/scheduling/corev1` and
//! `v1.Toleration.ToleratesTaint`).

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// The taint that stands for `spec.unschedulable` (upstream `v1.TaintNodeUnschedulable`).
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Whether `t` tolerates `taint`: same effect (or none given), same key (or none given with
/// `Exists`), and for `Equal` (the default operator) the same value.
pub fn tolerates_taint(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        // Gt/Lt are alpha upstream (TaintTolerationComparisonOperators, off by default); an
        // unknown operator tolerates nothing.
        _ => false,
    }
}

/// NoSchedule and NoExecute taints: those Filter must respect (upstream
/// `DoNotScheduleTaintsFilterFunc`).
pub fn do_not_schedule_taint(t: &Taint) -> bool {
    t.effect == "NoSchedule" || t.effect == "NoExecute"
}

/// The first taint passing `filter` that no toleration tolerates.
pub fn find_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| filter(t))
        .find(|taint| !tolerations.iter().any(|t| tolerates_taint(t, taint)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Toleration {
            key: opt(key),
            operator: opt(op),
            value: opt(value),
            effect: opt(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn toleration_operators_and_effects() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        let cases = [
            (tol("dedicated", "Equal", "gpu", "NoSchedule"), true),
            (tol("dedicated", "", "gpu", ""), true),
            (tol("dedicated", "Equal", "cpu", "NoSchedule"), false),
            (tol("dedicated", "Exists", "", ""), true),
            (tol("dedicated", "Exists", "", "NoExecute"), false),
            (tol("", "Exists", "", ""), true),
            (tol("", "Exists", "", "NoSchedule"), true),
            (tol("other", "Exists", "", ""), false),
            (tol("dedicated", "Gt", "1", ""), false),
        ];
        for (i, (toleration, want)) in cases.iter().enumerate() {
            assert_eq!(
                tolerates_taint(toleration, &t),
                *want,
                "case {i}: {toleration:?}"
            );
        }
    }

    #[test]
    fn finds_first_untolerated() {
        let taints = [
            taint("a", "", "PreferNoSchedule"),
            taint("b", "", "NoSchedule"),
            taint("c", "", "NoExecute"),
        ];
        let tols = [tol("b", "Exists", "", "")];
        let found = find_untolerated_taint(&taints, &tols, do_not_schedule_taint);
        assert_eq!(found.map(|t| t.key.as_str()), Some("c"));
        let all = [tol("", "Exists", "", "")];
        assert!(find_untolerated_taint(&taints, &all, |_| true).is_none());
    }
}
