//! Just enough of the Prometheus text format: histograms summed over label sets.

use std::collections::BTreeMap;

/// A histogram summed over every label set that matches a filter.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Histogram {
    pub(crate) count: f64,
    pub(crate) sum: f64,
    /// Cumulative counts by upper bound, ascending (`+Inf` last).
    pub(crate) buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// Mean of the observations.
    pub(crate) fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// `histogram_quantile` as Prometheus computes it (linear within the bucket).
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 || self.buckets.is_empty() {
            return None;
        }
        let rank = q * self.count;
        let mut prev_bound = 0.0;
        let mut prev_count = 0.0;
        for &(bound, cum) in &self.buckets {
            if cum >= rank {
                if bound.is_infinite() {
                    return Some(prev_bound);
                }
                let in_bucket = cum - prev_count;
                if in_bucket <= 0.0 {
                    return Some(bound);
                }
                return Some(prev_bound + (bound - prev_bound) * (rank - prev_count) / in_bucket);
            }
            prev_bound = bound;
            prev_count = cum;
        }
        Some(prev_bound)
    }
}

/// `(name, labels, value)` of one sample line.
fn parse_line(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (head, value) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}')?;
            (&line[..close + 1], line[close + 1..].trim())
        }
        None => line.split_once(' ')?,
    };
    let value: f64 = value.split_whitespace().next()?.parse().ok()?;
    let (name, labels) = match head.find('{') {
        Some(open) => (&head[..open], parse_labels(&head[open + 1..head.len() - 1])),
        None => (head, BTreeMap::new()),
    };
    Some((name, labels, value))
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        let after = &rest[eq + 1..];
        let Some(body) = after.strip_prefix('"') else {
            break;
        };
        let mut value = String::new();
        let mut end = body.len();
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            if escaped {
                value.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = i;
                break;
            } else {
                value.push(c);
            }
        }
        out.insert(key, value);
        rest = body.get(end + 1..).unwrap_or("");
    }
    out
}

/// The histogram `name` summed over the label sets having every `(label, value)` of `filter`.
pub(crate) fn histogram(text: &str, name: &str, filter: &[(&str, &str)]) -> Option<Histogram> {
    let bucket_name = format!("{name}_bucket");
    let sum_name = format!("{name}_sum");
    let count_name = format!("{name}_count");
    let mut h = Histogram::default();
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    let mut seen = false;
    for (metric, labels, value) in text.lines().filter_map(parse_line) {
        if !filter
            .iter()
            .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        {
            continue;
        }
        if metric == bucket_name {
            let Some(le) = labels.get("le").and_then(|le| parse_bound(le)) else {
                continue;
            };
            let e = buckets.entry(le.to_bits()).or_insert((le, 0.0));
            e.1 += value;
        } else if metric == sum_name {
            h.sum += value;
            seen = true;
        } else if metric == count_name {
            h.count += value;
            seen = true;
        }
    }
    let mut b: Vec<(f64, f64)> = buckets.into_values().collect();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    h.buckets = b;
    seen.then_some(h)
}

fn parse_bound(le: &str) -> Option<f64> {
    match le {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}

/// Sum of the counter/gauge `name` over label sets matching `filter`.
pub(crate) fn sum(text: &str, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for (metric, labels, value) in text.lines().filter_map(parse_line) {
        if metric == name
            && filter
                .iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP x_seconds help
# TYPE x_seconds histogram
x_seconds_bucket{profile="a",result="scheduled",le="0.001"} 1
x_seconds_bucket{profile="a",result="scheduled",le="0.01"} 3
x_seconds_bucket{profile="a",result="scheduled",le="+Inf"} 4
x_seconds_sum{profile="a",result="scheduled"} 0.5
x_seconds_count{profile="a",result="scheduled"} 4
x_seconds_bucket{profile="a",result="error",le="0.001"} 0
x_seconds_bucket{profile="a",result="error",le="0.01"} 0
x_seconds_bucket{profile="a",result="error",le="+Inf"} 1
x_seconds_sum{profile="a",result="error"} 2
x_seconds_count{profile="a",result="error"} 1
attempts_total{result="scheduled",profile="a"} 4
"#;

    #[test]
    fn histograms_are_summed_and_filtered() {
        let all = histogram(TEXT, "x_seconds", &[]).unwrap();
        assert_eq!(all.count, 5.0);
        assert_eq!(all.sum, 2.5);
        assert_eq!(all.buckets.last().unwrap().1, 5.0);
        let ok = histogram(TEXT, "x_seconds", &[("result", "scheduled")]).unwrap();
        assert_eq!(ok.count, 4.0);
        assert_eq!(ok.mean(), Some(0.125));
        // rank 2 of 4: halfway through the (0.001, 0.01] bucket holding observations 2 and 3.
        let median = ok.quantile(0.5).unwrap();
        assert!((median - 0.0055).abs() < 1e-9, "{median}");
        assert!(histogram(TEXT, "missing", &[]).is_none());
        assert_eq!(
            sum(TEXT, "attempts_total", &[("result", "scheduled")]),
            Some(4.0)
        );
    }
}
