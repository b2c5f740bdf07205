//! The TrafficMirrorFilter reconciler will live here, in the same steps as the session's:
//! observe (read the cloud filter and its rules) → decide (the pure [`plan`]) → execute (the
//! cloud calls, in the plan's order) → status (one write of ids, observation and conditions).
//!
//! Only the pure step exists so far, so it can be reviewed and property-tested on its own.

pub mod plan;
