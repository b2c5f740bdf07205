//! Test-only crash injection: `failpoint::hit("session-create-after")` aborts the process when the
//! environment variable `TMO_FAILPOINTS` (comma-separated names) names that point.
//!
//! The crash-safety tests use it to kill the operator at every step of create, update and delete and
//! then check that a restarted operator converges without duplicates or leaks. It is compiled only
//! into debug builds (`debug_assertions`); in release builds `hit` is an empty inline function.

/// Environment variable listing the armed failpoints.
pub const ENV: &str = "TMO_FAILPOINTS";

/// Every failpoint the operator has, so tests and docs can enumerate them.
pub const ALL: &[&str] = &[
    "session-create-before",
    "session-create-after",
    "session-record-after",
    "session-update-after",
    "session-sources-after",
    "session-delete-after",
    "filter-create-before",
    "filter-create-after",
    "filter-record-after",
    "filter-update-after",
    "rule-intent-after",
    "rule-create-after",
    "rule-update-after",
    "rule-delete-after",
    "filter-delete-after",
    "sessionset-child-create-after",
];

/// Aborts the process if `name` is armed (debug builds only).
#[cfg(debug_assertions)]
pub fn hit(name: &str) {
    if let Ok(armed) = std::env::var(ENV)
        && armed.split(',').any(|a| a.trim() == name)
    {
        eprintln!("failpoint {name} hit: aborting");
        std::process::abort();
    }
}

/// Release builds: failpoints do not exist.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_name: &str) {}
