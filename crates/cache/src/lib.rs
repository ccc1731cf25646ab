//! ksched cache
