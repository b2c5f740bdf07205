//! The ports calls of a set (cloud): TEMPORARY until the ports client is merged.

use std::collections::BTreeSet;

use super::error::SetError;
use super::resolve::PortFacts;
use crate::api::PortTag;
use crate::controller::providers::registry::Provider;
use crate::telemetry::Metrics;

/// The ports holding any of `addresses` (in `vpc_id` when set).
pub async fn by_addresses(
    _p: &Provider,
    _metrics: &Metrics,
    _addresses: &[String],
    _vpc_id: Option<&str>,
) -> Result<Vec<PortFacts>, SetError> {
    Err(SetError::ProviderNotReady("ports API not merged".into()))
}

/// The ids of the ports carrying `tags`.
pub async fn by_tags(
    _p: &Provider,
    _metrics: &Metrics,
    _tags: &[PortTag],
) -> Result<BTreeSet<String>, SetError> {
    Err(SetError::ProviderNotReady("ports API not merged".into()))
}
