use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::{Error, Result};

/// Environment variable naming a directory that already holds `etcd`, `kube-apiserver`,
/// `kube-scheduler` and `ksched-testenv` (as produced by `testenv/build.sh`). When set, nothing is
/// built.
pub const BIN_DIR_ENV: &str = "KSCHED_TESTENV_BIN_DIR";

/// Programs a complete binary directory contains.
pub(crate) const PROGRAMS: [&str; 4] =
    ["etcd", "kube-apiserver", "kube-scheduler", "ksched-testenv"];

/// The root of the ksched repository (two levels above this crate's manifest).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Returns the directory holding the control-plane binaries.
///
/// Uses [`BIN_DIR_ENV`] if set; otherwise runs `testenv/build.sh` (once per process), which
/// builds the binaries into `target/testenv/<go.sum hash>/bin` unless they are already there.
/// The build's progress goes to this process's stderr. This blocks, possibly for a long time on
/// a cold cache: call it from `spawn_blocking` in async code.
pub fn bin_dir() -> Result<PathBuf> {
    static BIN_DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN_DIR
        .get_or_init(|| locate().map_err(|e| e.to_string()))
        .clone()
        .map_err(Error::Binaries)
}

fn locate() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        let dir = PathBuf::from(dir);
        check_complete(&dir)
            .map_err(|e| Error::Binaries(format!("{BIN_DIR_ENV}={}: {e}", dir.display())))?;
        return Ok(dir);
    }
    let script = repo_root().join("testenv/build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::Binaries(format!("cannot run {}: {e}", script.display())))?;
    if !output.status.success() {
        return Err(Error::Binaries(format!(
            "{} failed ({}); its error output is above",
            script.display(),
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| Error::Binaries(format!("{} printed no directory", script.display())))?;
    check_complete(&dir).map_err(|e| Error::Binaries(format!("{}: {e}", script.display())))?;
    Ok(dir)
}

fn check_complete(dir: &Path) -> std::result::Result<(), String> {
    let missing: Vec<&str> = PROGRAMS
        .iter()
        .copied()
        .filter(|p| !dir.join(p).is_file())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing {} in {}",
            missing.join(", "),
            dir.display()
        ))
    }
}
