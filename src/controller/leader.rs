//! Leader election on a `coordination.k8s.io/v1` Lease, written by hand on `Api<Lease>`.
//!
//! The algorithm is client-go's `leaderelection` (the one kube-controller-manager uses):
//!
//! - **Acquire** when the Lease does not exist (create), has no holder, or its record (holder,
//!   renewTime, transitions) has not changed for a whole lease duration *as measured on this
//!   process's monotonic clock* since this process first saw that record. The holder's `renewTime`
//!   is never compared with the local wall clock, so clock skew between nodes cannot make a standby
//!   take a live leader's lease.
//! - **Renew** every duration/3. Every write is a `replace` carrying the `resourceVersion` that was
//!   read, so two candidates can never both win: the loser gets 409 Conflict.
//! - **Fencing**: the leader gives up when it has not renewed for 2/3 of the duration (the renew
//!   deadline), i.e. at least duration/3 before any standby may take over; and when a renew finds
//!   another holder. Giving up means the process exits at once (see [`Elector::hold`]), so no cloud
//!   call or status write of the old leader can overlap the new leader's.
//! - **Release** on shutdown: the holder clears `holderIdentity` (again guarded by
//!   `resourceVersion`), so a standby acquires on its next poll instead of waiting for expiry.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::{debug, info, warn};

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// The Lease's namespace.
    pub namespace: String,
    /// This process's identity (the `holderIdentity` it writes).
    pub identity: String,
    /// How long a lease is valid after its last renewal.
    pub duration: Duration,
}

impl LeaseConfig {
    /// How often the holder renews: duration/3.
    pub fn renew_period(&self) -> Duration {
        self.duration / 3
    }

    /// How long the holder may fail to renew before it must consider itself deposed: 2/3 of the
    /// duration, so it stops at least duration/3 before a standby may take over.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// How often a standby looks at the Lease: duration/5, at most 2 s.
    pub fn retry_period(&self) -> Duration {
        (self.duration / 5).min(Duration::from_secs(2))
    }
}

/// The default identity: `$POD_NAME`, else the hostname plus a random suffix (two processes on one
/// host must not share an identity).
pub fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "traffic-mirror-operator".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

/// The default namespace: the pod's (from the service account), else `default`.
pub fn default_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// What this process last saw of the Lease, and when (monotonic).
#[derive(Debug, Clone, PartialEq)]
struct Record {
    holder: Option<String>,
    renew: Option<MicroTime>,
    transitions: Option<i32>,
}

/// One candidate.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observed: Option<(Record, Instant)>,
    last_renew: Option<Instant>,
}

/// The outcome of one attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This process holds the lease (acquired or renewed).
    Holding,
    /// Another process holds a valid lease (or won the race).
    Standby,
}

impl Elector {
    /// A candidate for `cfg`'s Lease.
    pub fn new(client: Client, cfg: LeaseConfig) -> Elector {
        Elector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
            last_renew: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    /// Blocks until this process holds the lease.
    pub async fn campaign(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Holding) => {
                    info!(lease = %self.cfg.name, namespace = %self.cfg.namespace, identity = %self.cfg.identity, "acquired the leader lease");
                    return;
                }
                Ok(Attempt::Standby) => {}
                Err(e) => {
                    warn!(lease = %self.cfg.name, error = %e, "leader lease: cannot read or write")
                }
            }
            tokio::time::sleep(self.cfg.retry_period()).await;
        }
    }

    /// Renews every duration/3 while this process is the leader; returns (with the reason) when
    /// leadership is lost: another holder, or no successful renew within the renew deadline.
    pub async fn hold(&mut self) -> String {
        loop {
            tokio::time::sleep(self.cfg.renew_period()).await;
            loop {
                let since = self.last_renew.map(|t| t.elapsed()).unwrap_or_default();
                let left = self.cfg.renew_deadline().saturating_sub(since);
                if left.is_zero() {
                    return format!(
                        "no successful renew for {since:?} (renew deadline {:?})",
                        self.cfg.renew_deadline()
                    );
                }
                match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                    Ok(Ok(Attempt::Holding)) => break,
                    Ok(Ok(Attempt::Standby)) => {
                        let holder = self.observed.as_ref().and_then(|(r, _)| r.holder.clone());
                        return format!("the lease is now held by {holder:?}");
                    }
                    Ok(Err(e)) => {
                        warn!(lease = %self.cfg.name, error = %e, "leader lease: renew failed, retrying");
                        tokio::time::sleep(self.cfg.retry_period().min(left)).await;
                    }
                    Err(_) => {} // the deadline check above ends it
                }
            }
        }
    }

    /// Gives the lease up if this process holds it: clears `holderIdentity` (resourceVersion-guarded).
    pub async fn resign(&mut self) {
        let lease = match self.api.get_opt(&self.cfg.name).await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "leader lease: cannot read it to release it");
                return;
            }
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        let released = Lease {
            metadata: lease.metadata.clone(),
            spec: Some(LeaseSpec {
                holder_identity: None,
                acquire_time: None,
                renew_time: None,
                lease_duration_seconds: spec.lease_duration_seconds,
                lease_transitions: spec.lease_transitions,
                ..Default::default()
            }),
        };
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &released)
            .await
        {
            Ok(_) => {
                info!(lease = %self.cfg.name, identity = %self.cfg.identity, "released the leader lease")
            }
            Err(e) => warn!(error = %e, "leader lease: release failed (it will expire)"),
        }
    }

    /// One client-go style attempt: create, take over (free or expired by local observation), or renew.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = MicroTime(jiff_now());
        let Some(lease) = self.api.get_opt(&self.cfg.name).await? else {
            return self.create_lease(now).await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let Some((acquire_time, transitions)) = self.claim(&spec) else {
            return Ok(Attempt::Standby);
        };
        let next = Lease {
            metadata: lease.metadata.clone(), // carries resourceVersion: 409 if anyone wrote since
            spec: Some(LeaseSpec {
                holder_identity: Some(self.cfg.identity.clone()),
                acquire_time: acquire_time.or_else(|| Some(now.clone())),
                renew_time: Some(now),
                lease_duration_seconds: Some(self.duration_secs()),
                lease_transitions: transitions,
                ..spec
            }),
        };
        self.replace_lease(next).await
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.cfg.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// No Lease yet: create it, holding it (a 409 means another replica was faster).
    async fn create_lease(&mut self, now: MicroTime) -> Result<Attempt, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.cfg.name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.cfg.identity.clone()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_duration_seconds: Some(self.duration_secs()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => {
                self.last_renew = Some(Instant::now());
                Ok(Attempt::Holding)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Standby),
            Err(e) => Err(e),
        }
    }

    /// Whether this replica may write the Lease: it holds it (renew: keep its acquire time and
    /// transitions), or the Lease is free or its record has not changed for a whole duration on this
    /// replica's own clock (take over: a new acquire time, one more transition). `None` = stand by.
    fn claim(&mut self, spec: &LeaseSpec) -> Option<(Option<MicroTime>, Option<i32>)> {
        let record = Record {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew: spec.renew_time.clone(),
            transitions: spec.lease_transitions,
        };
        let seen_at = match &self.observed {
            Some((r, t)) if *r == record => *t,
            _ => {
                let t = Instant::now();
                self.observed = Some((record.clone(), t));
                t
            }
        };
        let mine = record.holder.as_deref() == Some(self.cfg.identity.as_str());
        // The holder's own duration counts (another version may write a different one).
        let valid_for = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(self.cfg.duration);
        if record.holder.is_some() && !mine && seen_at.elapsed() < valid_for {
            return None;
        }
        if mine {
            return Some((spec.acquire_time.clone(), spec.lease_transitions));
        }
        debug!(previous = ?record.holder, "leader lease is free or expired, taking it");
        Some((None, Some(spec.lease_transitions.unwrap_or(0) + 1)))
    }

    /// Writes the claimed Lease (guarded by its resourceVersion) and records what was written.
    async fn replace_lease(&mut self, next: Lease) -> Result<Attempt, kube::Error> {
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                let s = written.spec.unwrap_or_default();
                let record = Record {
                    holder: s.holder_identity,
                    renew: s.renew_time,
                    transitions: s.lease_transitions,
                };
                self.observed = Some((record, Instant::now()));
                self.last_renew = Some(Instant::now());
                Ok(Attempt::Holding)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Standby),
            Err(e) => Err(e),
        }
    }
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_follow_the_duration() {
        let c = LeaseConfig {
            name: "l".into(),
            namespace: "n".into(),
            identity: "me".into(),
            duration: Duration::from_secs(15),
        };
        assert_eq!(c.renew_period(), Duration::from_secs(5));
        assert_eq!(c.renew_deadline(), Duration::from_secs(10));
        assert_eq!(c.retry_period(), Duration::from_secs(2));
        assert!(
            c.renew_deadline() < c.duration,
            "the leader stops before a standby may take over"
        );
    }

    #[test]
    fn identities_are_unique_without_pod_name() {
        if std::env::var("POD_NAME").is_err() {
            assert_ne!(default_identity(), default_identity());
        }
    }
}
