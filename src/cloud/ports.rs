//! The VPC v3 port API (`/v3/{project_id}/ports`, not under `/vpc`): the wire models the operator
//! needs to turn Kubernetes Nodes into mirror sources, and the [`VpcClient`] calls that read them
//! (`ListPorts` with its filters and marker paging, `ShowPort`, `ListPortsByTags`).
//!
//! Models decode leniently like the traffic-mirror ones (missing or `null` fields take their
//! default, unknown fields are ignored), so a port answer with the dozens of fields the operator
//! does not use still decodes. The calls use the client's request/sign/error path.

use std::collections::HashMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::{VpcClient, check_id, encode_query, next_marker};
use super::error::CloudError;
use super::models::{PageInfo, lenient};

/// Path of the port collection under `/v3/{project_id}`.
const PORTS: &str = "ports";
/// Path of `ListPortsByTags` under `/v3/{project_id}`.
const PORTS_BY_TAGS: &str = "ports/resource-instances/filter";
/// Page size of `ListPortsByTags` (its documented maximum).
const TAGS_PAGE: usize = 1000;
/// How many ids one `ListPorts` call filters on when resolving tag matches (keeps URLs short).
const IDS_PER_CALL: usize = 50;

/// One private IP of a port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateIp {
    /// The subnet the address is in.
    #[serde(default, deserialize_with = "lenient::string")]
    pub subnet_cidr_id: String,
    /// The address.
    #[serde(default, deserialize_with = "lenient::string")]
    pub ip_address: String,
}

/// A tag of a port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortTag {
    /// Key.
    #[serde(default, deserialize_with = "lenient::string")]
    pub key: String,
    /// Value (may be empty).
    #[serde(default, deserialize_with = "lenient::string")]
    pub value: String,
}

/// A port (network interface): the fields the operator uses to pick mirror sources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// Port id: what a session lists as a source.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// Name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    /// `ACTIVE`, `BUILD` or `DOWN`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub status: String,
    /// The server the port is attached to.
    #[serde(default, deserialize_with = "lenient::string")]
    pub device_id: String,
    /// `compute:<AZ>` for a server NIC.
    #[serde(default, deserialize_with = "lenient::string")]
    pub device_owner: String,
    /// The VPC (private IPs are unique only within one).
    #[serde(default, deserialize_with = "lenient::string")]
    pub vpc_id: String,
    /// Private IPs (a Node's InternalIP is one of them).
    #[serde(default, deserialize_with = "lenient::null_default")]
    pub private_ips: Vec<PrivateIp>,
    /// Tags.
    #[serde(default, deserialize_with = "lenient::null_default")]
    pub tags: Vec<PortTag>,
    /// Instance id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub instance_id: String,
    /// Instance type.
    #[serde(default, deserialize_with = "lenient::string")]
    pub instance_type: String,
}

/// One page of `ListPorts`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PortPage {
    /// The ports on this page.
    #[serde(default, deserialize_with = "lenient::null_default")]
    pub ports: Vec<Port>,
    /// Paging: pass `next_marker` as [`PortQuery::marker`] for the next page.
    #[serde(default, deserialize_with = "lenient::null_default")]
    pub page_info: PageInfo,
}

/// `ListPorts` filters. Each list filter matches any of its values (sent as a repeated key); an
/// empty list filters nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortQuery {
    /// Port ids.
    pub id: Vec<String>,
    /// Server (device) ids.
    pub device_id: Vec<String>,
    /// Private IP addresses (sent as `private_ips=ip_address=<ip>`).
    pub private_ips: Vec<String>,
    /// The VPC.
    pub vpc_id: Option<String>,
    /// Page size (the API's default and maximum is 2000).
    pub limit: Option<u32>,
    /// Id of the last port of the previous page.
    pub marker: Option<String>,
}

impl PortQuery {
    /// The query pairs, in a fixed order (keys repeat for list filters).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        out.extend(self.id.iter().map(|v| ("id", v.clone())));
        out.extend(self.device_id.iter().map(|v| ("device_id", v.clone())));
        let ips = self.private_ips.iter();
        out.extend(ips.map(|ip| ("private_ips", format!("ip_address={ip}"))));
        out.extend(self.vpc_id.iter().map(|v| ("vpc_id", v.clone())));
        out.extend(self.limit.iter().map(|v| ("limit", v.to_string())));
        out.extend(self.marker.iter().map(|v| ("marker", v.clone())));
        out
    }
}

/// A `ListPortsByTags` tag filter: the port carries tag `key` with one of `values` (any value when
/// empty). Several filters must all hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TagFilter {
    /// Tag key.
    pub key: String,
    /// Accepted values.
    pub values: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ShowPortResponse {
    port: Port,
}

#[derive(Debug, Default, Deserialize)]
struct TagResource {
    #[serde(default, deserialize_with = "lenient::string")]
    resource_id: String,
}

#[derive(Debug, Default, Deserialize)]
struct TagPage {
    #[serde(default, deserialize_with = "lenient::null_default")]
    resources: Vec<TagResource>,
    #[serde(default, deserialize_with = "lenient::i64")]
    total_count: i64,
}

#[derive(Debug, Serialize)]
struct TagBody<'a> {
    tags: &'a [TagFilter],
}

/// Order `ports` as `ids` lists them (the tag answer's order), dropping ids no longer found.
fn in_order(ids: &[String], ports: Vec<Port>) -> Vec<Port> {
    let mut by_id: HashMap<String, Port> = ports.into_iter().map(|p| (p.id.clone(), p)).collect();
    ids.iter().filter_map(|id| by_id.remove(id)).collect()
}

impl VpcClient {
    /// One page of `GET /v3/{project_id}/ports`.
    pub async fn list_ports_page(&self, q: &PortQuery) -> Result<PortPage, CloudError> {
        let query = encode_query(&q.pairs());
        self.call_in_project(Method::GET, PORTS, &query, None::<&()>)
            .await
    }

    /// Every port matching `q` (from `q.marker` on), following `next_marker` page after page.
    pub async fn list_all_ports(&self, q: &PortQuery) -> Result<Vec<Port>, CloudError> {
        let mut q = q.clone();
        let mut out = Vec::new();
        loop {
            let page = self.list_ports_page(&q).await?;
            let empty = page.ports.is_empty();
            out.extend(page.ports);
            match next_marker(PORTS, q.marker.as_deref(), empty, page.page_info)? {
                Some(m) => q.marker = Some(m),
                None => return Ok(out),
            }
        }
    }

    /// `GET /v3/{project_id}/ports/{id}`.
    pub async fn show_port(&self, id: &str) -> Result<Port, CloudError> {
        let path = format!("{PORTS}/{}", check_id("port", id)?);
        let r: ShowPortResponse = self
            .call_in_project(Method::GET, &path, "", None::<&()>)
            .await?;
        Ok(r.port)
    }

    /// The ports carrying the tags (`ListPortsByTags`, paged by offset), with their details
    /// (the tag answer has only ids, so they are then listed by id).
    pub async fn list_ports_by_tags(&self, tags: &[TagFilter]) -> Result<Vec<Port>, CloudError> {
        let ids = self.port_ids_by_tags(tags).await?;
        let mut ports = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_CALL) {
            let q = PortQuery {
                id: chunk.to_vec(),
                ..PortQuery::default()
            };
            ports.extend(self.list_all_ports(&q).await?);
        }
        Ok(in_order(&ids, ports))
    }

    async fn port_ids_by_tags(&self, tags: &[TagFilter]) -> Result<Vec<String>, CloudError> {
        let body = TagBody { tags };
        let mut ids: Vec<String> = Vec::new();
        loop {
            let query = encode_query(&[
                ("limit", TAGS_PAGE.to_string()),
                ("offset", ids.len().to_string()),
            ]);
            let page: TagPage = self
                .call_in_project(Method::POST, PORTS_BY_TAGS, &query, Some(&body))
                .await?;
            let got = page.resources.len();
            ids.extend(page.resources.into_iter().map(|r| r.resource_id));
            if got == 0 || ids.len() as i64 >= page.total_count {
                return Ok(ids);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queries_repeat_keys_and_prefix_private_ips() {
        let q = PortQuery {
            id: vec!["a".into(), "b".into()],
            private_ips: vec!["10.0.0.1".into()],
            vpc_id: Some("v".into()),
            limit: Some(5),
            marker: Some("m".into()),
            ..PortQuery::default()
        };
        assert_eq!(
            encode_query(&q.pairs()),
            "id=a&id=b&private_ips=ip_address%3D10.0.0.1&vpc_id=v&limit=5&marker=m"
        );
        assert!(PortQuery::default().pairs().is_empty());
    }

    #[test]
    fn ports_decode_leniently_and_ignore_extra_fields() {
        let p: PortPage = serde_json::from_value(json!({
            "ports": [{"id": "p1", "device_id": null, "private_ips": null, "tags": [{"key": "k"}],
                       "binding:vif_details": {"x": 1}, "admin_state_up": true}],
            "page_info": {"current_count": 1}
        }))
        .unwrap();
        assert_eq!(p.ports[0].id, "p1");
        assert_eq!(p.ports[0].device_id, "");
        assert!(p.ports[0].private_ips.is_empty());
        assert_eq!(p.ports[0].tags[0].value, "");
        assert_eq!(p.page_info.next_marker, None);
    }

    #[test]
    fn tag_results_keep_the_tag_answer_order() {
        let port = |id: &str| Port {
            id: id.into(),
            ..Port::default()
        };
        let ids: Vec<String> = ["c", "a", "gone"].map(String::from).to_vec();
        let got = in_order(&ids, vec![port("a"), port("c")]);
        assert_eq!(got, vec![port("c"), port("a")]);
    }
}
