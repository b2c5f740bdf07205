//! The ports calls of a set (cloud), through the account's budget ([`Provider::cloud`]): the ports
//! holding a batch of Node addresses (one `ListPorts` with repeated `private_ips` filters, scoped by
//! `vpc_id` when set, paged), and the ports carrying the set's tags (`ListPortsByTags`).
//! A call of the whole `list_all_ports` counts as one budget token (one page: 2,000 ports).

use std::collections::BTreeSet;

use super::error::SetError;
use super::resolve::PortFacts;
use crate::api::PortTag;
use crate::cloud::ports::{Port, PortQuery, TagFilter};
use crate::controller::providers::registry::Provider;
use crate::telemetry::Metrics;

/// The operation label of a ports listing (metrics, errors).
pub const LIST_OPERATION: &str = "list_ports";
/// The operation label of a tag query.
pub const TAGS_OPERATION: &str = "list_ports_by_tags";

/// What resolution needs of a port.
pub fn facts(p: Port) -> PortFacts {
    PortFacts {
        addresses: p.private_ips.into_iter().map(|ip| ip.ip_address).collect(),
        id: p.id,
        device_id: p.device_id,
        vpc_id: p.vpc_id,
    }
}

/// The ports holding any of `addresses` (in `vpc_id` when set): one query, paged.
pub async fn by_addresses(
    p: &Provider,
    metrics: &Metrics,
    addresses: &[String],
    vpc_id: Option<&str>,
) -> Result<Vec<PortFacts>, SetError> {
    let q = PortQuery {
        private_ips: addresses.to_vec(),
        vpc_id: vpc_id.map(str::to_string),
        ..PortQuery::default()
    };
    let ports = p
        .call(metrics, LIST_OPERATION, p.client.list_all_ports(&q))
        .await
        .map_err(|source| SetError::Cloud {
            operation: LIST_OPERATION,
            source,
        })?;
    Ok(ports.into_iter().map(facts).collect())
}

/// The ids of the ports carrying `tags` (values under a key OR-ed, keys AND-ed).
pub async fn by_tags(
    p: &Provider,
    metrics: &Metrics,
    tags: &[PortTag],
) -> Result<BTreeSet<String>, SetError> {
    let filters: Vec<TagFilter> = tags
        .iter()
        .map(|t| TagFilter {
            key: t.key.clone(),
            values: t.values.clone(),
        })
        .collect();
    let ports = p
        .call(
            metrics,
            TAGS_OPERATION,
            p.client.list_ports_by_tags(&filters),
        )
        .await
        .map_err(|source| SetError::Cloud {
            operation: TAGS_OPERATION,
            source,
        })?;
    Ok(ports.into_iter().map(|p| p.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::ports::PrivateIp;

    #[test]
    fn facts_take_every_address() {
        let p = Port {
            id: "p".into(),
            device_id: "d".into(),
            vpc_id: "v".into(),
            private_ips: vec![
                PrivateIp {
                    subnet_cidr_id: "s".into(),
                    ip_address: "10.0.0.1".into(),
                },
                PrivateIp {
                    subnet_cidr_id: "s".into(),
                    ip_address: "10.0.0.2".into(),
                },
            ],
            ..Port::default()
        };
        let f = facts(p);
        assert_eq!(
            (f.id.as_str(), f.device_id.as_str(), f.vpc_id.as_str()),
            ("p", "d", "v")
        );
        assert_eq!(f.addresses, ["10.0.0.1", "10.0.0.2"]);
    }
}
