//! [`CycleState`]: what plugins pass each other within one scheduling cycle.

use std::{
    any::{Any, type_name},
    collections::{HashMap, HashSet},
    fmt,
    hash::{BuildHasherDefault, Hasher},
};

/// The hasher of the state's keys. Filter and Score read the state once per plugin per node
/// (thousands of reads per cycle), where SipHash over the whole key was a measurable share of
/// the cycle. Keys are constant strings chosen by plugins, not user input, so HashDoS
/// resistance buys nothing here: the length and the first and last 8 bytes, mixed with one
/// multiply each, tell the few keys of a cycle apart (a collision only costs a comparison).
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl KeyHasher {
    fn mix(&mut self, w: u64) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let word = |b: &[u8]| {
            let mut w = [0u8; 8];
            w[..b.len()].copy_from_slice(b);
            u64::from_le_bytes(w)
        };
        let n = bytes.len();
        self.mix(n as u64);
        if n <= 8 {
            self.mix(word(bytes));
        } else {
            self.mix(word(&bytes[..8]));
            self.mix(word(&bytes[n - 8..]));
        }
    }

    fn write_u8(&mut self, _: u8) {
        // `str`'s hash ends with a 0xff marker byte: the length is mixed in already.
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap<V> = HashMap<String, V, BuildHasherDefault<KeyHasher>>;

/// A value plugins keep in the [`CycleState`]. Any `Clone + Send + Sync` type qualifies; the
/// clone is what preemption's dry runs mutate (PreFilter extensions AddPod/RemovePod), so keep
/// data that those never touch behind an `Arc` to make the clone cheap.
pub trait StateData: Any + Send + Sync {
    /// A deep enough copy for a dry run.
    fn clone_data(&self) -> Box<dyn StateData>;
    /// `self` as `Any`, for downcasting.
    fn as_any(&self) -> &dyn Any;
    /// `self` as mutable `Any`, for downcasting.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Clone + Send + Sync + 'static> StateData for T {
    fn clone_data(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Why a [`CycleState`] read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Nothing was written under the key (usually: the PreFilter that writes it did not run).
    #[error("{0:?} not found in the cycle state")]
    NotFound(String),
    /// Something of another type was written under the key.
    #[error("cycle state {key:?} holds another type than {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// The type asked for.
        expected: &'static str,
    },
}

/// A typed store for one scheduling cycle, keyed by string (by convention `PluginName/Point`),
/// plus the framework's per-cycle skip sets.
///
/// The scheduling cycle hands plugins `&CycleState` where they run in parallel (Filter,
/// Score) and `&mut CycleState` where they run one at a time (PreFilter, PreScore, Reserve), so
/// the store needs no locks: the borrow checker enforces write-once-then-read.
///
/// ```
/// use ksched_framework::CycleState;
///
/// #[derive(Clone)]
/// struct PreFilterState { requested_cpu: i64 }
///
/// let mut state = CycleState::new();
/// state.write("NodeResourcesFit/PreFilter", PreFilterState { requested_cpu: 250 });
/// let s: &PreFilterState = state.read("NodeResourcesFit/PreFilter").unwrap();
/// assert_eq!(s.requested_cpu, 250);
///
/// // A clone is independent: preemption mutates clones in its dry runs.
/// let mut dry_run = state.clone();
/// dry_run.read_mut::<PreFilterState>("NodeResourcesFit/PreFilter").unwrap().requested_cpu = 0;
/// assert_eq!(state.read::<PreFilterState>("NodeResourcesFit/PreFilter").unwrap().requested_cpu, 250);
/// ```
#[derive(Default)]
pub struct CycleState {
    data: KeyMap<Box<dyn StateData>>,
    skip_filter_plugins: HashSet<String>,
    skip_score_plugins: HashSet<String>,
    skip_pre_bind_plugins: HashSet<String>,
    record_plugin_metrics: bool,
}

impl CycleState {
    /// An empty state.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn write<T: StateData>(&mut self, key: impl Into<String>, value: T) {
        self.data.insert(key.into(), Box::new(value));
    }

    /// Reads the value under `key` as `T`.
    ///
    /// # Errors
    /// [`StateError::NotFound`] when nothing is stored under `key`, [`StateError::WrongType`]
    /// when something of another type is.
    pub fn read<T: StateData>(&self, key: &str) -> Result<&T, StateError> {
        let v = self
            .data
            .get(key)
            .ok_or_else(|| StateError::NotFound(key.to_owned()))?;
        (**v)
            .as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| StateError::WrongType {
                key: key.to_owned(),
                expected: type_name::<T>(),
            })
    }

    /// Reads the value under `key` as `T`, mutably.
    ///
    /// # Errors
    /// As [`CycleState::read`].
    pub fn read_mut<T: StateData>(&mut self, key: &str) -> Result<&mut T, StateError> {
        let v = self
            .data
            .get_mut(key)
            .ok_or_else(|| StateError::NotFound(key.to_owned()))?;
        (**v)
            .as_any_mut()
            .downcast_mut::<T>()
            .ok_or_else(|| StateError::WrongType {
                key: key.to_owned(),
                expected: type_name::<T>(),
            })
    }

    /// Removes the value under `key`.
    pub fn delete(&mut self, key: &str) {
        self.data.remove(key);
    }

    /// Plugins whose Filter is skipped this cycle (their PreFilter returned Skip).
    #[must_use]
    pub fn skip_filter_plugins(&self) -> &HashSet<String> {
        &self.skip_filter_plugins
    }

    /// Sets the Filter skip set.
    pub fn set_skip_filter_plugins(&mut self, plugins: HashSet<String>) {
        self.skip_filter_plugins = plugins;
    }

    /// Plugins whose Score is skipped this cycle (their PreScore returned Skip).
    #[must_use]
    pub fn skip_score_plugins(&self) -> &HashSet<String> {
        &self.skip_score_plugins
    }

    /// Sets the Score skip set.
    pub fn set_skip_score_plugins(&mut self, plugins: HashSet<String>) {
        self.skip_score_plugins = plugins;
    }

    /// Plugins whose PreBind is skipped (their PreBindPreFlight returned Skip).
    #[must_use]
    pub fn skip_pre_bind_plugins(&self) -> &HashSet<String> {
        &self.skip_pre_bind_plugins
    }

    /// Sets the PreBind skip set.
    pub fn set_skip_pre_bind_plugins(&mut self, plugins: HashSet<String>) {
        self.skip_pre_bind_plugins = plugins;
    }

    /// Whether per-plugin durations are recorded this cycle (sampled, as upstream, in 10 %).
    #[must_use]
    pub fn should_record_plugin_metrics(&self) -> bool {
        self.record_plugin_metrics
    }

    /// Turns per-plugin duration recording on or off for this cycle.
    pub fn set_record_plugin_metrics(&mut self, record: bool) {
        self.record_plugin_metrics = record;
    }
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        Self {
            data: self
                .data
                .iter()
                .map(|(k, v)| (k.clone(), (**v).clone_data()))
                .collect(),
            skip_filter_plugins: self.skip_filter_plugins.clone(),
            skip_score_plugins: self.skip_score_plugins.clone(),
            skip_pre_bind_plugins: self.skip_pre_bind_plugins.clone(),
            record_plugin_metrics: self.record_plugin_metrics,
        }
    }
}

impl fmt::Debug for CycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<_> = self.data.keys().collect();
        keys.sort();
        f.debug_struct("CycleState")
            .field("keys", &keys)
            .field("skip_filter_plugins", &self.skip_filter_plugins)
            .field("skip_score_plugins", &self.skip_score_plugins)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key_and_type() {
        let mut s = CycleState::new();
        assert_eq!(s.read::<u32>("k"), Err(StateError::NotFound("k".into())));
        s.write("k", 5_u64);
        let e = s.read::<u32>("k").unwrap_err();
        assert!(e.to_string().contains("u32"), "{e}");
        assert_eq!(*s.read::<u64>("k").unwrap(), 5);
        s.delete("k");
        assert!(s.read::<u64>("k").is_err());
    }
}
