//! Upstream `helper.DefaultNormalizeScore`.

use ksched_framework::NodeScore;

/// Scales scores to `[0, max_priority]` relative to the highest score; with `reverse`, the
/// lowest raw score gets the highest normalized score. All-zero scores become 0 (or
/// `max_priority` when reversed).
pub fn default_normalize_score(max_priority: i64, reverse: bool, scores: &mut [NodeScore]) {
    let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
    if max == 0 {
        if reverse {
            for s in scores.iter_mut() {
                s.score = max_priority;
            }
        }
        return;
    }
    for s in scores.iter_mut() {
        let mut v = max_priority.saturating_mul(s.score) / max;
        if reverse {
            v = max_priority - v;
        }
        s.score = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(v: &[i64]) -> Vec<NodeScore> {
        v.iter()
            .map(|&s| NodeScore {
                name: String::new(),
                score: s,
            })
            .collect()
    }

    #[test]
    fn normalizes_like_upstream() {
        let mut s = scores(&[1, 2, 3, 4, 5]);
        default_normalize_score(100, false, &mut s);
        assert_eq!(
            s.iter().map(|s| s.score).collect::<Vec<_>>(),
            [20, 40, 60, 80, 100]
        );
        let mut s = scores(&[1, 2, 3, 4, 5]);
        default_normalize_score(100, true, &mut s);
        assert_eq!(
            s.iter().map(|s| s.score).collect::<Vec<_>>(),
            [80, 60, 40, 20, 0]
        );
        let mut s = scores(&[0, 0]);
        default_normalize_score(100, true, &mut s);
        assert_eq!(s.iter().map(|s| s.score).collect::<Vec<_>>(), [100, 100]);
        let mut s = scores(&[0, 0]);
        default_normalize_score(100, false, &mut s);
        assert_eq!(s.iter().map(|s| s.score).collect::<Vec<_>>(), [0, 0]);
    }
}
