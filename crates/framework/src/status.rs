//! [`Status`]: what a plugin answers, with upstream's seven codes.

use std::fmt;

/// The outcome class of a plugin call, with upstream's numeric order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Code {
    /// The plugin ran and the pod may go on.
    #[default]
    Success,
    /// An internal failure: the pod is retried with backoff, preemption does not run.
    Error,
    /// The pod does not fit now; PostFilter (preemption) may make room.
    Unschedulable,
    /// The pod does not fit and preemption cannot help on this node.
    UnschedulableAndUnresolvable,
    /// Permit only: the pod waits before binding.
    Wait,
    /// The plugin has nothing to do for this pod (a Bind plugin that is "not mine", a PreFilter
    /// or PreScore that disables its coupled Filter or Score).
    Skip,
    /// The cycle succeeded but the pod waits on something outside the scheduler; it is requeued
    /// without backoff when a hint of the pending plugin says Queue.
    Pending,
}

impl Code {
    /// Upstream's name of the code (`"UnschedulableAndUnresolvable"`, …).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Success => "Success",
            Code::Error => "Error",
            Code::Unschedulable => "Unschedulable",
            Code::UnschedulableAndUnresolvable => "UnschedulableAndUnresolvable",
            Code::Wait => "Wait",
            Code::Skip => "Skip",
            Code::Pending => "Pending",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer of a plugin: a [`Code`], human-readable reasons and the plugin that set it.
///
/// `Status::success()` is the cheap default (no allocation), like upstream's nil `*Status`.
///
/// ```
/// use ksched_framework::{Code, Status};
///
/// let s = Status::unschedulable("node(s) had untolerated taint").with_plugin("TaintToleration");
/// assert!(s.is_rejected());
/// assert_eq!(s.code(), Code::Unschedulable);
/// assert_eq!(s.plugin(), Some("TaintToleration"));
/// assert_eq!(s.message(), "node(s) had untolerated taint");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    code: Code,
    reasons: Vec<String>,
    plugin: Option<String>,
}

impl Status {
    /// A successful status.
    #[must_use]
    pub const fn success() -> Self {
        Self {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: None,
        }
    }

    /// A status with the given code and reasons.
    #[must_use]
    pub fn new<I, S>(code: Code, reasons: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            code,
            reasons: reasons.into_iter().map(Into::into).collect(),
            plugin: None,
        }
    }

    /// A status of `code` with one reason.
    #[must_use]
    pub fn with_reason(code: Code, reason: impl Into<String>) -> Self {
        Self {
            code,
            reasons: vec![reason.into()],
            plugin: None,
        }
    }

    /// `Code::Error` with the error's text as reason.
    #[must_use]
    pub fn error(err: impl fmt::Display) -> Self {
        Self::with_reason(Code::Error, err.to_string())
    }

    /// `Code::Unschedulable` with one reason.
    #[must_use]
    pub fn unschedulable(reason: impl Into<String>) -> Self {
        Self::with_reason(Code::Unschedulable, reason)
    }

    /// `Code::UnschedulableAndUnresolvable` with one reason.
    #[must_use]
    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Self::with_reason(Code::UnschedulableAndUnresolvable, reason)
    }

    /// `Code::Skip`.
    #[must_use]
    pub const fn skip() -> Self {
        Self {
            code: Code::Skip,
            reasons: Vec::new(),
            plugin: None,
        }
    }

    /// `Code::Wait` (Permit only).
    #[must_use]
    pub const fn wait() -> Self {
        Self {
            code: Code::Wait,
            reasons: Vec::new(),
            plugin: None,
        }
    }

    /// `Code::Pending` with one reason.
    #[must_use]
    pub fn pending(reason: impl Into<String>) -> Self {
        Self::with_reason(Code::Pending, reason)
    }

    /// Sets the plugin that produced this status (the framework does this for rejections).
    #[must_use]
    pub fn with_plugin(mut self, plugin: impl Into<String>) -> Self {
        self.plugin = Some(plugin.into());
        self
    }

    /// Sets the plugin in place.
    pub fn set_plugin(&mut self, plugin: impl Into<String>) {
        self.plugin = Some(plugin.into());
    }

    /// Adds one more reason.
    pub fn append_reason(&mut self, reason: impl Into<String>) {
        self.reasons.push(reason.into());
    }

    /// The code.
    #[must_use]
    pub const fn code(&self) -> Code {
        self.code
    }

    /// The reasons, in order.
    #[must_use]
    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }

    /// The plugin that set this status, if the framework or plugin recorded it.
    #[must_use]
    pub fn plugin(&self) -> Option<&str> {
        self.plugin.as_deref()
    }

    /// The reasons joined by `", "`, as upstream's `Message()`.
    #[must_use]
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }

    /// Code is Success.
    #[must_use]
    pub const fn is_success(&self) -> bool {
        matches!(self.code, Code::Success)
    }

    /// Code is Error.
    #[must_use]
    pub const fn is_error(&self) -> bool {
        matches!(self.code, Code::Error)
    }

    /// Code is Skip.
    #[must_use]
    pub const fn is_skip(&self) -> bool {
        matches!(self.code, Code::Skip)
    }

    /// Code is Wait.
    #[must_use]
    pub const fn is_wait(&self) -> bool {
        matches!(self.code, Code::Wait)
    }

    /// Unschedulable, UnschedulableAndUnresolvable or Pending: the pod was turned away rather
    /// than the scheduler failing.
    #[must_use]
    pub const fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable | Code::Pending
        )
    }

    /// `None` for Success, Wait and Skip, else an error carrying the message — upstream's
    /// `AsError`.
    #[must_use]
    pub fn as_error(&self) -> Option<StatusError> {
        match self.code {
            Code::Success | Code::Wait | Code::Skip => None,
            _ => Some(StatusError(self.clone())),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.plugin, self.reasons.is_empty()) {
            (Some(p), false) => write!(f, "{} ({p}): {}", self.code, self.message()),
            (Some(p), true) => write!(f, "{} ({p})", self.code),
            (None, false) => write!(f, "{}: {}", self.code, self.message()),
            (None, true) => write!(f, "{}", self.code),
        }
    }
}

/// A non-success [`Status`] as a `std::error::Error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StatusError(pub Status);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_upstream_names_and_order() {
        let all = [
            Code::Success,
            Code::Error,
            Code::Unschedulable,
            Code::UnschedulableAndUnresolvable,
            Code::Wait,
            Code::Skip,
            Code::Pending,
        ];
        let names: Vec<_> = all.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "Success",
                "Error",
                "Unschedulable",
                "UnschedulableAndUnresolvable",
                "Wait",
                "Skip",
                "Pending"
            ]
        );
        assert!(all.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn rejection_and_error_conversion() {
        assert!(Status::pending("x").is_rejected());
        assert!(!Status::error("boom").is_rejected());
        assert!(Status::success().as_error().is_none());
        assert!(Status::skip().as_error().is_none());
        assert!(Status::wait().as_error().is_none());
        let e = Status::error("boom").with_plugin("P").as_error().unwrap();
        assert_eq!(e.to_string(), "Error (P): boom");
        let mut s = Status::new(Code::Unschedulable, ["a", "b"]);
        s.append_reason("c");
        assert_eq!(s.message(), "a, b, c");
    }
}
