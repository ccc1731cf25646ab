//! [`Clock`]: where the queue reads the time, so tests can move it by hand.

use std::{
    fmt,
    time::{Duration, Instant},
};

use parking_lot::Mutex;

/// A source of [`Instant`]s. Backoff expiry and the unschedulable-pods timeout are computed
/// from it; the background flush loops still tick on tokio's timer, which is why tests call the
/// `flush_*` methods directly instead of sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// tokio's clock: the same as [`RealClock`], except that it stands still while tokio's time
/// is paused (`#[tokio::test(start_paused = true)]`, `tokio::time::pause`) and moves with
/// `tokio::time::advance`, together with the timers of the background flushes.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A clock that stands still until told to move.
///
/// ```
/// use std::time::Duration;
/// use ksched_queue::{Clock, FakeClock};
///
/// let clock = FakeClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(3));
/// assert_eq!(clock.now() - start, Duration::from_secs(3));
/// ```
#[derive(Debug)]
pub struct FakeClock {
    now: Mutex<Instant>,
}

impl FakeClock {
    /// A clock frozen at the current real time.
    #[must_use]
    pub fn new() -> Self {
        Self::at(Instant::now())
    }

    /// A clock frozen at `now`.
    #[must_use]
    pub fn at(now: Instant) -> Self {
        Self {
            now: Mutex::new(now),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.now.lock() += by;
    }

    /// Sets the clock to `now` (which may be earlier: the queue saturates, it does not panic).
    pub fn set(&self, now: Instant) {
        *self.now.lock() = now;
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        *self.now.lock()
    }
}
