//! Every cloud call the reconcilers make goes through [`metered`], which counts it by operation and
//! outcome (`tmo_cloud_calls_total`) in one place, so no call site counts by hand and none is missed.

use std::future::Future;

use crate::cloud::CloudError;
use crate::telemetry::Metrics;

/// Awaits one cloud call and counts it: `success`, or the error's class (`not_found`, `throttled`, …).
pub async fn metered<T>(
    metrics: &Metrics,
    operation: &'static str,
    call: impl Future<Output = Result<T, CloudError>>,
) -> Result<T, CloudError> {
    let result = call.await;
    let outcome = match &result {
        Ok(_) => "success",
        Err(e) => e.metric_label(),
    };
    metrics.cloud_call(operation, outcome);
    result
}
