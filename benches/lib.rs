//! Criterion benchmarks of the ksched crates; see `docs/benchmarks.md` for the figures.
