//! [`ConfigError`]: every problem of a configuration, each naming file, field path and cause.

use std::{fmt, path::PathBuf};

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path in upstream's notation, e.g. `profiles[0].pluginConfig[1].name`.
    pub path: String,
    /// 1-based line and column in the file, when the parser knows them.
    pub location: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

/// A configuration that cannot be used, with all its problems.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file the configuration came from, if any.
    pub file: Option<PathBuf>,
    /// The problems, in the order found.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// An error with a single problem.
    #[must_use]
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: None,
            problems: vec![Problem {
                path: path.into(),
                location: None,
                message: message.into(),
            }],
        }
    }

    /// Attaches the file name.
    #[must_use]
    pub fn in_file(mut self, file: Option<PathBuf>) -> Self {
        if self.file.is_none() {
            self.file = file;
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self
            .file
            .as_ref()
            .map_or_else(|| "<config>".to_owned(), |p| p.display().to_string());
        if self.problems.len() > 1 {
            writeln!(
                f,
                "{file}: {} problems in the scheduler configuration:",
                self.problems.len()
            )?;
        }
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if self.problems.len() > 1 {
                f.write_str("  ")?;
            }
            f.write_str(&file)?;
            if let Some((line, col)) = p.location {
                write!(f, ":{line}:{col}")?;
            }
            if p.path.is_empty() {
                write!(f, ": {}", p.message)?;
            } else {
                write!(f, ": {}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

/// Collects problems while validating.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            location: None,
            message: message.into(),
        });
    }

    pub(crate) fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                file: None,
                problems: self.0,
            })
        }
    }
}
