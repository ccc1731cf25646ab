//! Criterion benchmarks of the ksched crates; see `docs/benchmarks.md` for the figures.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Resource quantities from `(name, value)` pairs, e.g. `[("cpu", "32"), ("memory", "128Gi")]`,
/// for the benchmarks' nodes and pods.
#[must_use]
pub fn quantities(items: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}
