//! ksched scheduler
