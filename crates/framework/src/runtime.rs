//! The runtime that runs one profile's plugins.

/// One profile's plugins, instantiated and ordered per extension point.
#[derive(Debug)]
pub struct Framework {}
