//! ksched queue
