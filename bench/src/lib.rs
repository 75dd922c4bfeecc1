//! canopy-bench: what the benchmark harness (`bench/run.sh`) is made of.
//!
//! Does: the bench upstream's wire bytes ([`fixture`]), deterministic tokens and names for
//! bulk-created clients, a small built-in HTTP load loop ([`load`]) used when `oha` is
//! missing, process/CPU/RSS helpers ([`procs`]), and the orchestrator that runs every figure
//! of issue 7 and writes the markdown table ([`harness`]).
//!
//! Does not: change or tune the crates it measures; it drives their real binaries (and,
//! for in-process figures, their public library APIs).

pub mod admin;
pub mod fixture;
pub mod harness;
pub mod idp;
pub mod load;
pub mod procs;
pub mod stats;
pub mod upstream;

/// The built-in load generator in `bins`.
pub fn loadgen_override(bins: &std::path::Path) -> harness::loadgen::Generator {
    harness::loadgen::Generator::Builtin(bins.join("canopy-bench-load"))
}
