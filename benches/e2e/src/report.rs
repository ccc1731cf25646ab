//! The report: machine, options, one table per node count with both schedulers and ratios.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{BenchOptions, RunResult};

/// The options a report was measured with.
#[derive(Clone, Debug, Serialize)]
pub struct OptionsSummary {
    /// Pods per run.
    pub pods: usize,
    /// Node counts.
    pub node_counts: Vec<usize>,
    /// Scheduler order.
    pub schedulers: Vec<&'static str>,
    /// Client QPS / burst of both schedulers.
    pub qps: u32,
    /// Burst.
    pub burst: u32,
    /// Creates in flight.
    pub create_concurrency: usize,
    /// Profile name.
    pub scheduler_name: String,
    /// kube-scheduler `--v`.
    pub upstream_verbosity: u8,
    /// Node capacity (cpu, memory, pods).
    pub node_capacity: (String, String, u32),
    /// Pod requests (cpu, memory).
    pub pod_requests: (String, String),
    /// What was measured (git revision), if given.
    pub revision: Option<String>,
    /// Pods created before the scheduler started (backlog mode).
    pub precreate: bool,
    /// Extra environment of our scheduler.
    pub ours_env: Vec<(String, String)>,
}

impl From<&BenchOptions> for OptionsSummary {
    fn from(o: &BenchOptions) -> Self {
        OptionsSummary {
            pods: o.pods,
            node_counts: o.node_counts.clone(),
            schedulers: o.schedulers.iter().map(|s| s.as_str()).collect(),
            qps: o.qps,
            burst: o.burst,
            create_concurrency: o.create_concurrency,
            scheduler_name: o.scheduler_name.clone(),
            upstream_verbosity: o.upstream_verbosity,
            node_capacity: o.node_capacity.clone(),
            pod_requests: o.pod_requests.clone(),
            revision: o.revision.clone(),
            precreate: o.precreate,
            ours_env: o.ours_env.clone(),
        }
    }
}

/// Everything one benchmark measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// When it started (UTC).
    pub started_at: String,
    /// CPU model and count, memory.
    pub machine: String,
    /// `/proc/loadavg` at the start.
    pub load_at_start: String,
    /// What was run.
    pub options: OptionsSummary,
    /// One entry per scheduler and node count, in run order.
    pub runs: Vec<RunResult>,
}

impl Report {
    /// The run of `scheduler` (`ours`/`upstream`) on `nodes` nodes.
    pub fn run(&self, scheduler: &str, nodes: usize) -> Option<&RunResult> {
        self.runs
            .iter()
            .find(|r| r.scheduler == scheduler && r.nodes == nodes)
    }
}

/// `model name × N cores, M GiB`.
pub(crate) fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{model}, {cores} CPUs, {mem_gib:.0} GiB")
}

fn ratio(ours: f64, upstream: f64) -> String {
    if upstream > 0.0 && ours.is_finite() {
        format!("{:.2}", ours / upstream)
    } else {
        "–".to_owned()
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("–".to_owned(), |s| format!("{:.2}", s * 1e3))
}

/// The report as markdown: a header, then one table per node count (rows: measures; columns:
/// each scheduler and, with both present, ours/upstream), then whether the targets hold.
pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let o = &r.options;
    let _ = writeln!(
        out,
        "Measured {}{} on {}; load average at start {}.\n",
        r.started_at,
        o.revision
            .as_ref()
            .map_or(String::new(), |v| format!(" (revision {v})")),
        r.machine,
        r.load_at_start
    );
    let _ = writeln!(
        out,
        "{} pods per run (requests {} CPU, {} memory), nodes {} CPU / {} / {} pods; both schedulers: \
         client QPS/burst {}/{}, the harness admin identity, profile `{}` (default plugins), \
         leader election off; kube-scheduler `--v={}`; creator: {} creates in flight, {}; order: {}.\n",
        o.pods,
        o.pod_requests.0,
        o.pod_requests.1,
        o.node_capacity.0,
        o.node_capacity.1,
        o.node_capacity.2,
        o.qps,
        o.burst,
        o.scheduler_name,
        o.upstream_verbosity,
        o.create_concurrency,
        if o.precreate {
            "all pods created before the scheduler starts (backlog)"
        } else {
            "pods created while the scheduler runs"
        },
        o.schedulers.join(" then "),
    );
    if !o.ours_env.is_empty() {
        let env: Vec<String> = o
            .ours_env
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect();
        let _ = writeln!(
            out,
            "Our scheduler's extra environment: {}.\n",
            env.join(", ")
        );
    }
    for &nodes in &o.node_counts {
        let runs: Vec<&RunResult> = o
            .schedulers
            .iter()
            .filter_map(|s| r.run(s, nodes))
            .collect();
        if runs.is_empty() {
            continue;
        }
        let pair = r.run("ours", nodes).zip(r.run("upstream", nodes));
        let _ = writeln!(
            out,
            "#### {nodes} nodes, {} pods{}\n",
            o.pods,
            if o.precreate { " (backlog)" } else { "" }
        );
        let mut header = String::from("| |");
        let mut rule = String::from("|---|");
        for run in &runs {
            let _ = write!(header, " {} |", run.scheduler);
            rule.push_str("---:|");
        }
        if pair.is_some() {
            header.push_str(" ours / upstream |");
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        type Row = (&'static str, fn(&RunResult) -> f64, &'static str);
        let rows: [Row; 16] = [
            ("pods/s, average of 1 s samples", |x| x.rate_avg, "{:.0}"),
            ("pods/s, p50 of 1 s samples", |x| x.rate_p50, "{:.0}"),
            ("pods/s, p90 of 1 s samples", |x| x.rate_p90, "{:.0}"),
            ("pods/s, p99 of 1 s samples", |x| x.rate_p99, "{:.0}"),
            (
                "pods/s end to end (first create → last bound)",
                |x| x.overall_rate,
                "{:.0}",
            ),
            ("pod creation rate (pods/s)", |x| x.create_rate, "{:.0}"),
            (
                "latency create → bound p50 (ms)",
                |x| x.latency_p50 * 1e3,
                "{:.0}",
            ),
            ("latency p90 (ms)", |x| x.latency_p90 * 1e3, "{:.0}"),
            ("latency p99 (ms)", |x| x.latency_p99 * 1e3, "{:.0}"),
            ("latency max (ms)", |x| x.latency_max * 1e3, "{:.0}"),
            (
                "peak RSS (MiB, VmHWM)",
                |x| x.peak_rss_kib as f64 / 1024.0,
                "{:.0}",
            ),
            ("scheduler CPU (s)", |x| x.cpu.scheduler, "{:.1}"),
            (
                "scheduler CPU per pod (ms)",
                |x| x.cpu.scheduler * 1e3 / x.bound.max(1) as f64,
                "{:.2}",
            ),
            ("kube-apiserver CPU (s)", |x| x.cpu.apiserver, "{:.1}"),
            ("etcd CPU (s)", |x| x.cpu.etcd, "{:.1}"),
            ("benchmark client CPU (s)", |x| x.cpu.bench, "{:.1}"),
        ];
        for (name, f, fmt) in rows {
            let name = if o.precreate {
                name.replace("first create →", "scheduler start →")
            } else {
                name.to_owned()
            };
            let mut line = format!("| {name} |");
            for run in &runs {
                let v = f(run);
                let s = if fmt == "{:.0}" {
                    format!("{v:.0}")
                } else if fmt == "{:.1}" {
                    format!("{v:.1}")
                } else {
                    format!("{v:.2}")
                };
                let _ = write!(line, " {s} |");
            }
            if let Some((ours, up)) = pair {
                let _ = write!(line, " {} |", ratio(f(ours), f(up)));
            }
            let _ = writeln!(out, "{line}");
        }
        type MRow = (&'static str, fn(&RunResult) -> Option<f64>);
        let mrows: [MRow; 6] = [
            ("/metrics: scheduling attempt mean (ms)", |x| {
                x.metrics.attempt_mean
            }),
            ("/metrics: scheduling attempt p99 (ms)", |x| {
                x.metrics.attempt_p99
            }),
            ("/metrics: Filter mean (ms)", |x| x.metrics.filter_mean),
            ("/metrics: Bind mean (ms)", |x| x.metrics.bind_mean),
            ("/metrics: pod scheduling SLI mean (ms)", |x| {
                x.metrics.sli_mean
            }),
            ("/metrics: pod scheduling SLI p99 (ms)", |x| {
                x.metrics.sli_p99
            }),
        ];
        for (name, f) in mrows {
            let mut line = format!("| {name} |");
            for run in &runs {
                let _ = write!(line, " {} |", opt_ms(f(run)));
            }
            if let Some((ours, up)) = pair {
                let v = f(ours).zip(f(up));
                let _ = write!(
                    line,
                    " {} |",
                    v.map_or("–".to_owned(), |(a, b)| ratio(a, b))
                );
            }
            let _ = writeln!(out, "{line}");
        }
        let mut misc = String::from("| bound / created; 1 s samples; startup to /readyz (s) |");
        for run in &runs {
            let _ = write!(
                misc,
                " {}/{}; {}; {:.1} |",
                run.bound,
                run.pods,
                run.samples.len(),
                run.startup_seconds
            );
        }
        if pair.is_some() {
            misc.push_str(" |");
        }
        let _ = writeln!(out, "{misc}");
        let mut load = String::from("| load average before → after |");
        for run in &runs {
            let _ = write!(load, " {} → {} |", run.load_before, run.load_after);
        }
        if pair.is_some() {
            load.push_str(" |");
        }
        let _ = writeln!(out, "{load}\n");
        if let Some((ours, up)) = pair {
            let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
            let throughput = ours.rate_avg / up.rate_avg.max(1e-9);
            let e2e = ours.overall_rate / up.overall_rate.max(1e-9);
            let rss = ours.peak_rss_kib as f64 / (up.peak_rss_kib as f64).max(1.0);
            let _ = writeln!(
                out,
                "Targets: pods/s ≥ 2× upstream — {} ({throughput:.2}× on the sample average, {e2e:.2}× end to end); \
                 p99 latency no worse — {} ({:.0} vs {:.0} ms); peak RSS ≤ ⅓ — {} ({rss:.2}×).{}\n",
                verdict(throughput >= 2.0),
                verdict(ours.latency_p99 <= up.latency_p99),
                ours.latency_p99 * 1e3,
                up.latency_p99 * 1e3,
                verdict(rss <= 1.0 / 3.0),
                if !o.precreate && ours.create_rate < 1.2 * ours.overall_rate.max(up.overall_rate) {
                    " Pod creation ran at about the scheduling rate: creation, not scheduling, may be the limit."
                } else {
                    ""
                }
            );
        }
    }
    out
}
