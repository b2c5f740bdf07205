//! traffic-mirror-operator: manage Huawei Cloud VPC traffic mirroring as Kubernetes objects.
//!
//! Data flows one way: watch event → reconcile → plan (pure) → cloud calls → status.
//! - [`api`]: the CRD types and their admission validation (no cloud knowledge).
//! - [`cloud`]: the AK/SK signer, wire models and typed VPC v3 client (no Kubernetes knowledge).
//! - [`controller`]: the reconcilers; the diff lives in pure `plan` functions.
//! - [`emulator`]: a faithful emulator of the VPC v3 traffic-mirror API (its own binary).
//! - [`telemetry`]: logging and Prometheus metrics.
//! - [`failpoint`]: test-only crash injection, compiled out of release builds.
#![forbid(unsafe_code)]

pub mod api;
pub mod cloud;
pub mod controller;
pub mod emulator;
pub mod failpoint;
pub mod telemetry;
