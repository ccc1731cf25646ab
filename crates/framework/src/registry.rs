//! The plugin [`Registry`]: plugin names to factories, plus the default profile's plugins.

use std::{collections::BTreeMap, fmt, sync::Arc};

use serde::de::DeserializeOwned;

use crate::{Handle, Plugin, config::Plugins};

/// A plugin's arguments from the profile's `pluginConfig` (or none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginArgs {
    value: Option<serde_json::Value>,
}

impl PluginArgs {
    /// No arguments: the plugin uses its defaults.
    #[must_use]
    pub const fn none() -> Self {
        Self { value: None }
    }

    /// Arguments given as JSON.
    #[must_use]
    pub fn from_value(value: serde_json::Value) -> Self {
        Self { value: Some(value) }
    }

    /// The raw value.
    #[must_use]
    pub fn value(&self) -> Option<&serde_json::Value> {
        self.value.as_ref()
    }

    /// Decodes into the plugin's typed args. Missing args give `T::default()`; `apiVersion`
    /// and `kind` (as upstream's typed args carry them) are ignored; everything else must match
    /// `T` — mark it `#[serde(deny_unknown_fields)]` so a misspelt key is an error rather than a
    /// silently ignored setting.
    ///
    /// # Errors
    /// [`PluginError::Args`] with the path of the offending field inside the args.
    pub fn decode<T: DeserializeOwned + Default>(&self) -> Result<T, PluginError> {
        let Some(v) = &self.value else {
            return Ok(T::default());
        };
        let v = match v {
            serde_json::Value::Null => return Ok(T::default()),
            serde_json::Value::Object(m) => {
                let mut m = m.clone();
                m.remove("apiVersion");
                m.remove("kind");
                serde_json::Value::Object(m)
            }
            other => other.clone(),
        };
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            PluginError::Args {
                path: if path == "." { String::new() } else { path },
                message: e.into_inner().to_string(),
            }
        })
    }
}

/// Why a factory could not build its plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The args do not decode (wrong type, unknown field).
    #[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Args {
        /// Path inside the args (`refreshInterval`), empty for the args as a whole.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An argument decodes but its value is unusable.
    #[error("{field}: {message}")]
    InvalidArg {
        /// Path inside the args.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Anything else.
    #[error(transparent)]
    Other(#[from] Box<dyn std::error::Error + Send + Sync>),
}

impl PluginError {
    /// An unusable argument value.
    #[must_use]
    pub fn invalid_arg(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArg {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The field path inside the args, when known.
    #[must_use]
    pub fn field_path(&self) -> Option<&str> {
        match self {
            PluginError::Args { path, .. } => Some(path),
            PluginError::InvalidArg { field, .. } => Some(field),
            PluginError::Other(_) => None,
        }
    }
}

/// Builds a plugin from its args and the profile's handle.
pub type PluginFactory =
    Arc<dyn Fn(&PluginArgs, &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError> + Send + Sync>;

/// A registration that clashes with an existing one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a plugin named {0:?} is already registered")]
pub struct DuplicatePlugin(pub String);

/// Plugin names to factories, and the plugins a profile gets when its configuration does not
/// say otherwise (upstream's default `multiPoint` list).
///
/// ```
/// use std::sync::Arc;
/// use k8s_openapi::api::core::v1::Pod;
/// use ksched_framework::{CycleState, NodeInfo, Plugin, PluginArgs, Registry, ScorePlugin, Status};
///
/// #[derive(serde::Deserialize, Default)]
/// #[serde(rename_all = "camelCase", deny_unknown_fields)]
/// struct ConstantArgs { value: i64 }
///
/// struct Constant(i64);
/// impl Plugin for Constant {
///     fn name(&self) -> &str { "Constant" }
///     fn as_score(&self) -> Option<&dyn ScorePlugin> { Some(self) }
/// }
/// impl ScorePlugin for Constant {
///     fn score(&self, _: &CycleState, _: &Pod, _: &NodeInfo) -> Result<i64, Status> { Ok(self.0) }
/// }
///
/// let mut registry = Registry::new();
/// registry
///     .register("Constant", |args: &PluginArgs, _handle| {
///         let a: ConstantArgs = args.decode()?;
///         Ok(Arc::new(Constant(a.value)) as Arc<dyn Plugin>)
///     })
///     .unwrap();
/// assert!(registry.contains("Constant"));
///
/// let bad = PluginArgs::from_value(serde_json::json!({"valeu": 3}));
/// let err = bad.decode::<ConstantArgs>().err().unwrap();
/// assert!(err.to_string().contains("unknown field `valeu`"));
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, PluginFactory>,
    default_plugins: Plugins,
}

impl Registry {
    /// An empty registry with no default plugins.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a factory under `name`.
    ///
    /// # Errors
    /// [`DuplicatePlugin`] when the name is taken.
    pub fn register<F>(
        &mut self,
        name: impl Into<String>,
        factory: F,
    ) -> Result<(), DuplicatePlugin>
    where
        F: Fn(&PluginArgs, &Arc<Handle>) -> Result<Arc<dyn Plugin>, PluginError>
            + Send
            + Sync
            + 'static,
    {
        let name = name.into();
        if self.factories.contains_key(&name) {
            return Err(DuplicatePlugin(name));
        }
        self.factories.insert(name, Arc::new(factory));
        Ok(())
    }

    /// Removes a registration; true when there was one.
    pub fn unregister(&mut self, name: &str) -> bool {
        self.factories.remove(name).is_some()
    }

    /// Adds every registration of `other` (out-of-tree plugins over the in-tree registry).
    ///
    /// # Errors
    /// [`DuplicatePlugin`] on the first clashing name.
    pub fn merge(&mut self, other: Registry) -> Result<(), DuplicatePlugin> {
        for (name, f) in other.factories {
            if self.factories.contains_key(&name) {
                return Err(DuplicatePlugin(name));
            }
            self.factories.insert(name, f);
        }
        Ok(())
    }

    /// Whether `name` is registered.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// The factory for `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&PluginFactory> {
        self.factories.get(name)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// The plugins every profile starts from.
    #[must_use]
    pub fn default_plugins(&self) -> &Plugins {
        &self.default_plugins
    }

    /// Sets the plugins every profile starts from.
    pub fn set_default_plugins(&mut self, plugins: Plugins) {
        self.default_plugins = plugins;
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("plugins", &self.factories.keys().collect::<Vec<_>>())
            .field("default_plugins", &self.default_plugins)
            .finish()
    }
}
