//! Outputs of a simulation: the statistics of each run, the terminal summary, and the
//! self-contained HTML report (inline SVG charts drawn with plotters, tables, no scripts).

use std::{fmt::Write as _, time::Duration};

use plotters::{coord::types::RangedCoordf64, prelude::*};

use super::{
    engine::RunResult,
    scenario::{ProfileKind, Scenario},
    traffic::Balance,
};

/// The figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The profile.
    pub profile: ProfileKind,
    /// Pods bound.
    pub bound: usize,
    /// Pods never bound.
    pub unschedulable: usize,
    /// Pods bound, then deleted by preemption.
    pub preempted: usize,
    /// Scheduling attempts.
    pub attempts: usize,
    /// Bound pods per second of the scheduler's wall-clock busy time.
    pub pods_per_sec: f64,
    /// Arrival → bound latency p50, p90, p99.
    pub latency: [Duration; 3],
    /// Wall-clock time per attempt p50, p90, p99.
    pub attempt: [Duration; 3],
    /// Traffic balance with every placed pod visible.
    pub after: Balance,
    /// Highest link utilisation after, when every node has a capacity.
    pub max_utilisation: Option<f64>,
}

/// The `q`-quantile (0..=1) of sorted `v` (nearest rank; zero for an empty list).
#[must_use]
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn quantiles(mut v: Vec<Duration>) -> [Duration; 3] {
    v.sort_unstable();
    [quantile(&v, 0.5), quantile(&v, 0.9), quantile(&v, 0.99)]
}

impl Summary {
    /// The figures of `r`.
    #[must_use]
    pub fn of(r: &RunResult) -> Self {
        let bound = r.bound();
        let secs = r.busy_wall.as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let pods_per_sec = if secs > 0.0 { bound as f64 / secs } else { 0.0 };
        let after: Vec<f64> = r.nodes.iter().map(|n| n.after).collect();
        let max_utilisation = r
            .nodes
            .iter()
            .map(|n| n.capacity.map(|c| n.after / c))
            .collect::<Option<Vec<f64>>>()
            .map(|u| u.into_iter().fold(0.0, f64::max));
        Self {
            profile: r.profile,
            bound,
            unschedulable: r.unschedulable(),
            preempted: r.preempted(),
            attempts: r.attempt_wall.len(),
            pods_per_sec,
            latency: quantiles(r.pods.iter().filter_map(|p| p.latency).collect()),
            attempt: quantiles(r.attempt_wall.clone()),
            after: Balance::of(&after),
            max_utilisation,
        }
    }
}

/// A duration for tables: µs under a millisecond, ms under 10 s, else seconds.
#[must_use]
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 10e6 {
        format!("{:.1}ms", us / 1000.0)
    } else {
        format!("{:.1}s", us / 1e6)
    }
}

/// Bytes/s in decimal units (MB/s), as the plugin's own messages write them.
#[must_use]
pub fn fmt_rate(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} GB/s", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1} MB/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} kB/s", v / 1e3)
    } else {
        format!("{v:.0} B/s")
    }
}

fn header(scenario: &Scenario) -> String {
    format!(
        "scenario {}: {} nodes, {} pods, metric lag {:?}, refresh {:?}, seed {}",
        if scenario.name.is_empty() {
            "(unnamed)"
        } else {
            &scenario.name
        },
        scenario.node_count(),
        scenario.pod_count(),
        scenario.metric_lag.get(),
        scenario.refresh_interval.get(),
        scenario.seed,
    )
}

/// The terminal summary: one line per run, plus the baseline's balance.
#[must_use]
pub fn text_summary(scenario: &Scenario, runs: &[RunResult]) -> String {
    let mut out = String::new();
    let mut end = Duration::ZERO;
    let _ = writeln!(out, "{}", header(scenario));
    let _ = writeln!(
        out,
        "{:<31} {:>5} {:>7} {:>9} {:>26} {:>26} {:>8} {:>6}",
        "profile",
        "bound",
        "unsched",
        "pods/s",
        "latency p50/p90/p99",
        "attempt p50/p90/p99",
        "max/mean",
        "CV"
    );
    if let Some(r) = runs.first() {
        let before = Balance::of(&r.nodes.iter().map(|n| n.baseline).collect::<Vec<_>>());
        let _ = writeln!(
            out,
            "{:<31} {:>5} {:>7} {:>9} {:>26} {:>26} {:>8.2} {:>6.3}",
            "(baseline, before any pod)", "", "", "", "", "", before.max_over_mean, before.cv
        );
    }
    for r in runs {
        let s = Summary::of(r);
        let lat = s.latency.map(fmt_duration).join(" / ");
        end = end.max(r.sim_end);
        let att = s.attempt.map(fmt_duration).join(" / ");
        let _ = writeln!(
            out,
            "{:<31} {:>5} {:>7} {:>9.0} {:>26} {:>26} {:>8.2} {:>6.3}",
            s.profile.name(),
            s.bound,
            if s.preempted > 0 {
                format!("{}+{}p", s.unschedulable, s.preempted)
            } else {
                s.unschedulable.to_string()
            },
            s.pods_per_sec,
            lat,
            att,
            s.after.max_over_mean,
            s.after.cv
        );
    }
    let _ = writeln!(
        out,
        "(simulated {:.0}s; +Np: N pods preempted; pods/s and latency are this machine's wall-clock scheduling time; balance with every placed pod visible)",
        end.as_secs_f64()
    );
    out
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Series colours, one per profile, and grey for the baseline.
fn colour(p: ProfileKind) -> RGBColor {
    match p {
        ProfileKind::Default => RGBColor(0x4c, 0x72, 0xb0),
        ProfileKind::NoCompensation => RGBColor(0xdd, 0x84, 0x52),
        ProfileKind::NetworkTraffic => RGBColor(0x55, 0xa8, 0x68),
    }
}
const BASELINE: RGBColor = RGBColor(0xa0, 0xa0, 0xa0);

/// Above this many nodes the traffic chart shows sorted curves instead of grouped bars.
const MAX_BAR_NODES: usize = 48;
/// At most this many pods in the placement table.
const MAX_TABLE_PODS: usize = 2000;

type ChartResult = Result<(), Box<dyn std::error::Error>>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// An SVG of `size` drawn by `draw` on a white background.
fn svg_chart(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> ChartResult,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The series legend, top right.
fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>) -> ChartResult {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

/// Per-node traffic: the baseline and each run's traffic with every pod visible.
fn traffic_chart(runs: &[RunResult]) -> Result<String, String> {
    svg_chart((960, 420), |root| {
        let Some(first) = runs.first() else {
            return Ok(());
        };
        let n = first.nodes.len();
        let max = runs
            .iter()
            .flat_map(|r| r.nodes.iter().map(|x| x.after))
            .fold(1.0, f64::max)
            / 1e6;
        // Room above the bars for the legend.
        let max = max * 1.4;
        let bars = n <= MAX_BAR_NODES;
        #[allow(clippy::cast_precision_loss)]
        let xmax = n as f64;
        let mut chart = ChartBuilder::on(root)
            .caption(
                if bars {
                    "Traffic per node: before and after (MB/s)"
                } else {
                    "Traffic per node, sorted (MB/s)"
                },
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(if bars && n > 12 { 70 } else { 36 })
            .y_label_area_size(64)
            .build_cartesian_2d(if bars { -0.5..xmax - 0.5 } else { 0.0..xmax }, 0.0..max)?;
        let names: Vec<String> = first.nodes.iter().map(|x| x.name.clone()).collect();
        let mut mesh = chart.configure_mesh();
        mesh.disable_x_mesh()
            .y_desc("MB/s")
            .y_label_formatter(&|v| format!("{v:.0}"));
        if bars {
            let fmt = move |x: &f64| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let i = x.round() as usize;
                if (x - x.round()).abs() < 1e-6 {
                    names.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            };
            let style = if n <= 12 {
                ("sans-serif", 13).into_font()
            } else {
                ("sans-serif", 11)
                    .into_font()
                    .transform(FontTransform::Rotate90)
            };
            mesh.x_labels(n)
                .x_label_formatter(&fmt)
                .x_label_style(style)
                .draw()?;
        } else {
            mesh.x_desc("nodes, busiest first").draw()?;
        }
        // Series: baseline, then each run.
        let mut series: Vec<(String, RGBColor, Vec<f64>)> = vec![(
            "baseline".into(),
            BASELINE,
            first.nodes.iter().map(|x| x.baseline / 1e6).collect(),
        )];
        for r in runs {
            series.push((
                r.profile.name().into(),
                colour(r.profile),
                r.nodes.iter().map(|x| x.after / 1e6).collect(),
            ));
        }
        #[allow(clippy::cast_precision_loss)]
        let width = 0.8 / series.len() as f64;
        for (si, (name, c, values)) in series.iter().enumerate() {
            let c = *c;
            if bars {
                #[allow(clippy::cast_precision_loss)]
                let rects = values.iter().enumerate().map(move |(i, v)| {
                    let x0 = i as f64 - 0.4 + width * si as f64;
                    Rectangle::new([(x0, 0.0), (x0 + width, *v)], c.filled())
                });
                chart
                    .draw_series(rects)?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled())
                    });
            } else {
                let mut sorted = values.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                #[allow(clippy::cast_precision_loss)]
                let pts = sorted
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (i as f64 + 0.5, v));
                chart
                    .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 14, y)], c.stroke_width(2))
                    });
            }
        }
        legend(&mut chart)
    })
}

/// Coefficient of variation of actual traffic over simulated time, per run.
fn timeline_chart(runs: &[RunResult]) -> Result<String, String> {
    svg_chart((960, 360), |root| {
        let tmax = runs
            .iter()
            .flat_map(|r| r.timeline.iter().map(|p| p.t))
            .fold(1.0, f64::max);
        let ymax = runs
            .iter()
            .flat_map(|r| r.timeline.iter().map(|p| p.actual_cv.max(p.measured_cv)))
            .fold(0.1, f64::max);
        let mut chart = ChartBuilder::on(root)
            .caption("Traffic imbalance over time: CV across nodes (solid: real, dashed: as the plugin last measured)", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..tmax * 1.02, 0.0..ymax * 1.3)?;
        chart
            .configure_mesh()
            .x_desc("simulated seconds")
            .y_desc("CV")
            .draw()?;
        for r in runs {
            let c = colour(r.profile);
            chart
                .draw_series(LineSeries::new(
                    r.timeline.iter().map(|p| (p.t, p.actual_cv)),
                    c.stroke_width(2),
                ))?
                .label(r.profile.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], c.stroke_width(2))
                });
            chart.draw_series(DashedLineSeries::new(
                r.timeline.iter().map(|p| (p.t, p.measured_cv)),
                6,
                4,
                c.stroke_width(1),
            ))?;
        }
        legend(&mut chart)
    })
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}\
table{border-collapse:collapse;margin:1em 0;font-size:13px}\
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f3f3f3}td.l,th.l{text-align:left}\
.note{color:#555;font-size:13px}";

/// The HTML report of `runs` over `scenario`.
///
/// # Errors
/// A chart could not be drawn.
#[allow(clippy::too_many_lines)]
pub fn html_report(scenario: &Scenario, runs: &[RunResult]) -> Result<String, String> {
    let mut h = String::new();
    let title = format!(
        "ksched simulation: {}",
        if scenario.name.is_empty() {
            "scenario"
        } else {
            &scenario.name
        }
    );
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&title)
    );
    let _ = write!(
        h,
        "<h1>{}</h1><p>{}</p>",
        esc(&title),
        esc(&header(scenario))
    );
    if !scenario.description.is_empty() {
        let _ = write!(h, "<p>{}</p>", esc(&scenario.description));
    }
    let _ = write!(
        h,
        "<p class=\"note\">The real ksched framework, queue, cache and plugins scheduled these pods against an in-memory cluster. \
         A placed pod's expected bandwidth shows in the simulated measurements {:?} after binding (metric lag); \
         <b>after</b> is the traffic once every placed pod is visible. Latency is arrival → bound: simulated waiting (queue, backoff) plus the scheduler's wall-clock work in between.</p>",
        scenario.metric_lag.get()
    );

    // Summary table.
    h.push_str("<h2>Summary</h2><table><tr><th class=\"l\">profile</th><th>bound</th><th>unschedulable</th><th>preempted</th><th>attempts</th><th>pods/s</th>\
        <th>latency p50</th><th>p90</th><th>p99</th><th>attempt p50</th><th>p90</th><th>p99</th><th>max traffic</th><th>max/mean</th><th>CV</th><th>max utilisation</th></tr>");
    if let Some(r) = runs.first() {
        let before = Balance::of(&r.nodes.iter().map(|n| n.baseline).collect::<Vec<_>>());
        let util = r
            .nodes
            .iter()
            .map(|n| n.capacity.map(|c| n.baseline / c))
            .collect::<Option<Vec<_>>>()
            .map(|u| u.into_iter().fold(0.0, f64::max));
        let _ = write!(
            h,
            "<tr><td class=\"l\">baseline (before)</td><td></td><td></td><td></td><td></td><td></td><td></td><td></td><td></td><td></td><td></td><td></td><td>{}</td><td>{:.2}</td><td>{:.3}</td><td>{}</td></tr>",
            fmt_rate(before.max),
            before.max_over_mean,
            before.cv,
            util.map_or(String::new(), |u| format!("{:.1}%", u * 100.0))
        );
    }
    for r in runs {
        let s = Summary::of(r);
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td><b>{:.3}</b></td><td>{}</td></tr>",
            s.profile.name(),
            s.bound,
            s.unschedulable,
            s.preempted,
            s.attempts,
            s.pods_per_sec,
            fmt_duration(s.latency[0]),
            fmt_duration(s.latency[1]),
            fmt_duration(s.latency[2]),
            fmt_duration(s.attempt[0]),
            fmt_duration(s.attempt[1]),
            fmt_duration(s.attempt[2]),
            fmt_rate(s.after.max),
            s.after.max_over_mean,
            s.after.cv,
            s.max_utilisation
                .map_or(String::new(), |u| format!("{:.1}%", u * 100.0))
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Traffic per node</h2>");
    h.push_str(&traffic_chart(runs)?);
    h.push_str(&timeline_chart(runs)?);

    // Nodes.
    h.push_str("<h2>Nodes</h2><table><tr><th class=\"l\">node</th><th>baseline</th><th>link</th>");
    for r in runs {
        let _ = write!(h, "<th>{0}: pods</th><th>{0}: after</th>", r.profile.name());
    }
    h.push_str("</tr>");
    if let Some(first) = runs.first() {
        for (i, n) in first.nodes.iter().enumerate() {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td>",
                esc(&n.name),
                fmt_rate(n.baseline),
                n.capacity.map_or(String::new(), fmt_rate)
            );
            for r in runs {
                let x = &r.nodes[i];
                let util = x
                    .capacity
                    .map_or(String::new(), |c| format!(" ({:.0}%)", 100.0 * x.after / c));
                let _ = write!(
                    h,
                    "<td>{}</td><td>{}{}</td>",
                    x.pods,
                    fmt_rate(x.after),
                    util
                );
            }
            h.push_str("</tr>");
        }
    }
    h.push_str("</table>");

    // Placements.
    h.push_str("<h2>Placements</h2>");
    if let Some(first) = runs.first()
        && first.pods.len() > MAX_TABLE_PODS
    {
        let _ = write!(
            h,
            "<p class=\"note\">First {MAX_TABLE_PODS} of {} pods (by scenario order).</p>",
            first.pods.len()
        );
    }
    h.push_str("<table><tr><th class=\"l\">pod</th><th>arrival</th><th>bandwidth</th>");
    for r in runs {
        let _ = write!(
            h,
            "<th class=\"l\">{0}: node</th><th>attempts</th><th>latency</th>",
            r.profile.name()
        );
    }
    h.push_str("</tr>");
    if let Some(first) = runs.first() {
        for (i, p) in first.pods.iter().enumerate().take(MAX_TABLE_PODS) {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td>{:.2}s</td><td>{}</td>",
                esc(&p.name),
                p.arrival.as_secs_f64(),
                fmt_rate(p.bandwidth)
            );
            for r in runs {
                let x = &r.pods[i];
                let node = match (&x.node, &x.last_failure) {
                    (Some(n), _) if x.preempted => format!("<s>{}</s> <i>preempted</i>", esc(n)),
                    (Some(n), _) => esc(n),
                    (None, Some(f)) => format!("<i title=\"{}\">unschedulable</i>", esc(f)),
                    (None, None) => "<i>pending</i>".into(),
                };
                let _ = write!(
                    h,
                    "<td class=\"l\">{node}</td><td>{}</td><td>{}</td>",
                    x.attempts,
                    x.latency.map_or(String::new(), fmt_duration)
                );
            }
            h.push_str("</tr>");
        }
    }
    h.push_str("</table>");
    let _ = write!(
        h,
        "<p class=\"note\">Generated by <code>networktraffic-scheduler simulate</code> ({}).</p></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
        assert_eq!(quantile(&v[..1], 0.99), Duration::from_millis(1));
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_duration(Duration::from_micros(250)), "250µs");
        assert_eq!(fmt_duration(Duration::from_millis(3)), "3.0ms");
        assert_eq!(fmt_duration(Duration::from_secs(12)), "12.0s");
        assert_eq!(fmt_rate(12.5e6), "12.5 MB/s");
        assert_eq!(esc("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
