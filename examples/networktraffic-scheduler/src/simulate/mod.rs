//! `networktraffic-scheduler simulate`: the real scheduler against an in-memory cluster, with
//! simulated time and an in-memory traffic source — no apiserver, no Prometheus.
//!
//! - [`scenario`]: the YAML format (and its errors with line and field),
//! - [`generate`]: scenarios from `--nodes N --pods M --seed S`,
//! - [`engine`]: one run of one profile,
//! - [`traffic`]: the traffic source and balance statistics,
//! - [`report`]: the terminal summary and the HTML report.
//!
//! `docs/simulator.md` describes the format, the outputs and how to read them.

pub mod engine;
pub mod generate;
pub mod report;
pub mod scenario;
pub mod traffic;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use self::{
    engine::{Prepared, RunResult},
    scenario::{ProfileKind, Scenario},
};

/// Arguments of `simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Scenario file (YAML); see docs/simulator.md. Without one, a scenario is generated from
    /// --nodes, --pods and --seed.
    pub scenario: Option<PathBuf>,
    /// Nodes of a generated scenario.
    #[arg(long, conflicts_with = "scenario", default_value_t = 100)]
    pub nodes: u32,
    /// Pods of a generated scenario.
    #[arg(long, conflicts_with = "scenario", default_value_t = 1000)]
    pub pods: u32,
    /// Seed: of the generated scenario, or replacing the scenario file's `seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run the default profile, NetworkTraffic without and with herd compensation, side by
    /// side.
    #[arg(long)]
    pub compare: bool,
    /// Profiles to run instead of the scenario's `profiles` (repeatable): default,
    /// networktraffic-no-compensation, networktraffic.
    #[arg(long = "profile", value_parser = parse_profile, conflicts_with = "compare")]
    pub profiles: Vec<ProfileKind>,
    /// Write the HTML report here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the (generated or read) scenario as YAML here, e.g. to edit a generated one.
    #[arg(long)]
    pub save_scenario: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_profile(s: &str) -> Result<ProfileKind, String> {
    ProfileKind::ALL
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| format!("unknown profile {s:?}; one of: default, networktraffic-no-compensation, networktraffic"))
}

/// Loads or generates the scenario the arguments describe.
///
/// # Errors
/// The scenario file's error, with line and field.
pub fn load(args: &SimulateArgs) -> Result<Scenario, String> {
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::from_file(path).map_err(|e| e.to_string())?,
        None => generate::generate(args.nodes, args.pods, args.seed.unwrap_or(1)),
    };
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    Ok(scenario)
}

/// The profiles to run, in the order they are shown.
#[must_use]
pub fn profiles(args: &SimulateArgs, scenario: &Scenario) -> Vec<ProfileKind> {
    let mut p = if args.compare {
        ProfileKind::ALL.to_vec()
    } else if args.profiles.is_empty() {
        scenario.profiles.clone()
    } else {
        args.profiles.clone()
    };
    p.sort_unstable();
    p.dedup();
    p
}

/// Runs `scenario` under each of `profiles`, one after the other on the current runtime.
///
/// # Errors
/// A profile whose scheduler cannot be built (bad NetworkTraffic args).
pub async fn simulate(
    scenario: &Scenario,
    profiles: &[ProfileKind],
    progress: &ProgressBar,
) -> Result<Vec<RunResult>, String> {
    if profiles.iter().any(|p| p.uses_network_traffic()) {
        engine::check_plugin_args(scenario).map_err(|e| e.to_string())?;
    }
    let prepared = Prepared::new(scenario);
    let mut runs = Vec::with_capacity(profiles.len());
    for &p in profiles {
        runs.push(
            engine::run(scenario, &prepared, p, progress)
                .await
                .map_err(|e| format!("profile {p}: {e}"))?,
        );
    }
    Ok(runs)
}

/// The `simulate` subcommand: load, run, print the summary, write the report.
#[must_use]
pub fn main(args: &SimulateArgs) -> ExitCode {
    let scenario = match load(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("invalid scenario:\n{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.save_scenario {
        let written = scenario
            .to_yaml()
            .and_then(|y| std::fs::write(path, y).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let profiles = profiles(args, &scenario);
    // One thread: the simulation is sequential by design (reproducible), and the binding
    // tasks interleave with the scheduling loop as they do in the real scheduler.
    let rt = match crate::runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let total = scenario.pod_count() as u64 * profiles.len() as u64;
    let progress = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    };
    progress.set_style(
        ProgressStyle::with_template(
            "{bar:40.cyan/blue} {pos}/{len} pods bound  {msg}  [{elapsed}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    let runs = rt.block_on(simulate(&scenario, &profiles, &progress));
    progress.finish_and_clear();
    let runs = match runs {
        Ok(r) => r,
        Err(e) => {
            eprintln!("simulation failed: {e}");
            return ExitCode::from(2);
        }
    };
    // A closed pipe (`| head`) is not worth a panic.
    let mut stdout = std::io::stdout();
    let _ = std::io::Write::write_all(
        &mut stdout,
        report::text_summary(&scenario, &runs).as_bytes(),
    );
    let _ = std::io::Write::flush(&mut stdout);
    if let Some(out) = &args.out {
        match report::html_report(&scenario, &runs)
            .and_then(|h| std::fs::write(out, h).map_err(|e| e.to_string()))
        {
            Ok(()) => eprintln!("report: {}", out.display()),
            Err(e) => {
                eprintln!("cannot write the report {}: {e}", out.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(yaml: &str, profiles: &[ProfileKind]) -> Vec<RunResult> {
        let s = Scenario::from_yaml(yaml, "test").unwrap();
        simulate(&s, profiles, &ProgressBar::hidden())
            .await
            .unwrap()
    }

    const BURST: &str = include_str!("../../../scenarios/burst.yaml");

    #[tokio::test(flavor = "current_thread")]
    async fn burst_counts_and_compensation_spreads_better() {
        let runs = run(BURST, &ProfileKind::ALL).await;
        let s = Scenario::from_yaml(BURST, "burst").unwrap();
        for r in &runs {
            assert_eq!(r.pods.len(), s.pod_count(), "{}", r.profile);
            assert_eq!(r.bound(), s.pod_count(), "{}: all pods fit", r.profile);
            assert_eq!(r.unschedulable(), 0);
            assert_eq!(r.nodes.iter().map(|n| n.pods).sum::<usize>(), s.pod_count());
            assert!(
                r.pods
                    .iter()
                    .all(|p| p.attempts == 1 && p.latency.is_some())
            );
        }
        let cv = |p: ProfileKind| {
            let r = runs.iter().find(|r| r.profile == p).unwrap();
            report::Summary::of(r).after.cv
        };
        let (none, with) = (
            cv(ProfileKind::NoCompensation),
            cv(ProfileKind::NetworkTraffic),
        );
        assert!(
            with < none,
            "herd compensation should spread the burst: CV {with} vs {none} without"
        );
        assert!(
            with < cv(ProfileKind::Default),
            "and beat the traffic-blind default profile"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn same_seed_same_placements() {
        let s = generate::generate(30, 300, 5);
        let a = simulate(&s, &ProfileKind::ALL, &ProgressBar::hidden())
            .await
            .unwrap();
        let b = simulate(&s, &ProfileKind::ALL, &ProgressBar::hidden())
            .await
            .unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.placements(), y.placements(), "{}", x.profile);
            assert_eq!(x.bound(), y.bound());
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn preemption_deletes_the_victim_and_binds_the_preemptor() {
        let yaml = "nodes:\n- name: only\n  capacity: {cpu: 1, memory: 1Gi}\n  baselineTraffic: 1M\npods:\n- name: low\n  requests: {cpu: 800m}\n  expectedBandwidth: 5M\n- name: high\n  priority: 1000\n  requests: {cpu: 800m}\n  arrival: {at: 1s}\n";
        let runs = run(yaml, &[ProfileKind::Default]).await;
        let r = &runs[0];
        let (low, high) = (&r.pods[0], &r.pods[1]);
        assert!(low.preempted, "{low:?}");
        assert_eq!(high.node.as_deref(), Some("only"), "{high:?}");
        assert_eq!((r.bound(), r.preempted(), r.unschedulable()), (1, 1, 0));
        // The victim's traffic left with it.
        assert_eq!(r.nodes[0].after, 1e6);
        assert_eq!(r.nodes[0].pods, 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unschedulable_pods_are_counted_with_their_reason() {
        let yaml = "nodes:\n- name: small\n  capacity: {cpu: 1, memory: 1Gi}\npods:\n- name: big\n  requests: {cpu: 2}\n- name: ok\n  requests: {cpu: 500m}\n  arrival: {at: 1s}\n";
        let runs = run(yaml, &[ProfileKind::Default]).await;
        let r = &runs[0];
        assert_eq!((r.bound(), r.unschedulable()), (1, 1));
        let big = &r.pods[0];
        assert!(big.node.is_none());
        assert!(
            big.last_failure
                .as_deref()
                .unwrap_or_default()
                .contains("Insufficient cpu"),
            "{big:?}"
        );
        // Retried when the other pod's binding moved it, and failed again.
        assert!(big.attempts >= 1);
        let html = report::html_report(&Scenario::from_yaml(yaml, "t").unwrap(), &runs).unwrap();
        assert!(html.contains("<svg") && html.contains("unschedulable"));
    }
}
