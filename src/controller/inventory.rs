//! The operator's view of the cloud (client required for `refresh` only): one snapshot per
//! ProviderConfig of every traffic-mirror session, and one of every filter (filters carry their
//! rules), each filled by ONE paginated LIST per resync interval.
//!
//! At steady state the reconcilers read their observed state from here instead of sending a GET per
//! object: N objects cost one LIST per interval, not N GETs. Answers of the operator's own writes
//! are recorded as they arrive, and a LIST that started before such a write never overwrites it, so a
//! slow LIST cannot make a just-written session look stale (which would cause a redundant PUT).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use std::future::Future;

use crate::cloud::client::next_marker;
use crate::cloud::models::{
    ListFiltersQuery, ListSessionsQuery, TrafficMirrorFilter, TrafficMirrorSession,
};
use crate::cloud::{CloudError, VpcClient};

/// A kind of cloud object the inventory can hold: it has an id and one paginated LIST of the account.
pub trait Listed: Clone + Send + Sync + 'static {
    /// The operation name of the LIST (metrics, logs).
    const LIST_OPERATION: &'static str;
    /// The object's cloud id.
    fn id(&self) -> &str;
    /// One page of every object of the account (`page_size` per page, from `marker`) and the
    /// marker of the next page, if any. One page is one cloud call: the resync pays (and counts)
    /// each page through the account's budget.
    fn list_page(
        client: &VpcClient,
        page_size: u32,
        marker: Option<String>,
    ) -> impl Future<Output = Result<(Vec<Self>, Option<String>), CloudError>> + Send;
}

impl Listed for TrafficMirrorSession {
    const LIST_OPERATION: &'static str = "list_sessions";
    fn id(&self) -> &str {
        &self.id
    }
    async fn list_page(
        client: &VpcClient,
        page_size: u32,
        marker: Option<String>,
    ) -> Result<(Vec<Self>, Option<String>), CloudError> {
        let q = ListSessionsQuery {
            limit: Some(page_size),
            marker,
            ..Default::default()
        };
        let page = client.list_sessions_page(&q).await?;
        let items = page.traffic_mirror_sessions;
        let next = next_marker(
            "sessions",
            q.marker.as_deref(),
            items.is_empty(),
            page.page_info,
        )?;
        Ok((items, next))
    }
}

impl Listed for TrafficMirrorFilter {
    const LIST_OPERATION: &'static str = "list_filters";
    fn id(&self) -> &str {
        &self.id
    }
    async fn list_page(
        client: &VpcClient,
        page_size: u32,
        marker: Option<String>,
    ) -> Result<(Vec<Self>, Option<String>), CloudError> {
        let q = ListFiltersQuery {
            limit: Some(page_size),
            marker,
            ..Default::default()
        };
        let page = client.list_filters_page(&q).await?;
        let items = page.traffic_mirror_filters;
        let next = next_marker(
            "filters",
            q.marker.as_deref(),
            items.is_empty(),
            page.page_info,
        )?;
        Ok((items, next))
    }
}

/// One observed object and when it was observed.
#[derive(Clone, Debug)]
struct Entry<T> {
    /// `None` records a deletion (a tombstone), so an older LIST does not resurrect it.
    session: Option<T>,
    observed_at: Instant,
}

/// Snapshot of one cloud account's objects of one kind (sessions by default).
#[derive(Debug)]
pub struct Inventory<T = TrafficMirrorSession> {
    state: Mutex<State<T>>,
    /// Held by the one caller refreshing a stale snapshot for everyone waiting
    /// ([`Inventory::refresh_if_older`]).
    refreshing: tokio::sync::Mutex<()>,
}

impl<T> Default for Inventory<T> {
    fn default() -> Self {
        Inventory {
            state: Mutex::new(State {
                entries: HashMap::new(),
                listed_at: None,
            }),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }
}

#[derive(Debug)]
struct State<T> {
    entries: HashMap<String, Entry<T>>,
    listed_at: Option<Instant>,
}

/// What the inventory knows about one id.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // short-lived, never stored in bulk
pub enum Known<T = TrafficMirrorSession> {
    /// Seen (by a LIST or by the answer of a call) at the given time.
    Present(T),
    /// Known to be gone.
    Absent,
    /// No LIST yet and no call answer: the caller must GET.
    Unknown,
}

impl<T: Listed> Inventory<T> {
    /// Page size of the resync LIST (the API allows up to 2000).
    pub const PAGE_SIZE: u32 = 500;

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A panic while holding the lock cannot leave the map half-updated in a harmful way (every
        // update is a single insert/remove), so a poisoned lock is simply taken over.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is known about `id`.
    pub fn get(&self, id: &str) -> Known<T> {
        let st = self.lock();
        match st.entries.get(id) {
            Some(Entry {
                session: Some(s), ..
            }) => Known::Present(s.clone()),
            Some(Entry { session: None, .. }) => Known::Absent,
            None if st.listed_at.is_some() => Known::Absent,
            None => Known::Unknown,
        }
    }

    /// Whether the cloud itself said `id` is gone (a 404 answer, or our own DELETE) since the last
    /// LIST began: a tombstone, not merely an id a LIST did not return (a LIST may lag a create).
    /// Cloud ids are never reused, so such an id stays gone.
    pub fn said_gone(&self, id: &str) -> bool {
        matches!(
            self.lock().entries.get(id),
            Some(Entry { session: None, .. })
        )
    }

    /// Whether a LIST succeeded within `age`: proof the account's credentials work, so the
    /// ProviderConfig re-check needs no call of its own.
    pub fn listed_within(&self, age: std::time::Duration) -> bool {
        self.lock().listed_at.is_some_and(|t| t.elapsed() <= age)
    }

    /// Whether a LIST that began after `since` has completed: the snapshot then shows whatever the
    /// cloud held at `since` (a filter's delete refusal waits for this).
    pub fn listed_since(&self, since: Instant) -> bool {
        self.lock().listed_at.is_some_and(|t| t > since)
    }

    /// Records the answer of a call (create, GET, PUT, add/remove sources).
    pub fn record(&self, session: &T) {
        self.lock().entries.insert(
            session.id().to_string(),
            Entry {
                session: Some(session.clone()),
                observed_at: Instant::now(),
            },
        );
    }

    /// Records that `id` is gone (deleted by us, or a 404).
    pub fn forget(&self, id: &str) {
        self.lock().entries.insert(
            id.to_string(),
            Entry {
                session: None,
                observed_at: Instant::now(),
            },
        );
    }

    /// The objects in the snapshot that satisfy `pred` (only those are cloned).
    pub fn find(&self, pred: impl Fn(&T) -> bool) -> Vec<T> {
        self.lock()
            .entries
            .values()
            .filter_map(|e| e.session.as_ref().filter(|s| pred(s)).cloned())
            .collect()
    }

    /// Every object in the snapshot.
    pub fn all(&self) -> Vec<T> {
        self.lock()
            .entries
            .values()
            .filter_map(|e| e.session.clone())
            .collect()
    }

    /// Number of objects in the snapshot.
    pub fn len(&self) -> usize {
        self.lock()
            .entries
            .values()
            .filter(|e| e.session.is_some())
            .count()
    }

    /// Whether the snapshot holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the snapshot with a LIST's result (`started` = when the LIST began). Entries recorded
    /// after `started` win over the LIST; everything else the LIST did not return is gone.
    pub fn replace(&self, listed: Vec<T>, started: Instant) {
        let mut st = self.lock();
        let mut next: HashMap<String, Entry<T>> = st
            .entries
            .drain()
            .filter(|(_, e)| e.observed_at > started)
            .collect();
        for s in listed {
            next.entry(s.id().to_string()).or_insert(Entry {
                session: Some(s),
                observed_at: started,
            });
        }
        st.entries = next;
        st.listed_at = Some(started);
    }

    /// One paginated LIST of every object of the account, then [`Inventory::replace`]. `page`
    /// fetches one page from a marker: the caller routes each through the account's budget and
    /// the call metrics.
    pub async fn refresh<F, Fut>(&self, mut page: F) -> Result<usize, CloudError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<(Vec<T>, Option<String>), CloudError>>,
    {
        let started = Instant::now();
        let mut listed = Vec::new();
        let mut marker = None;
        loop {
            let (items, next) = page(marker).await?;
            listed.extend(items);
            match next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        let n = listed.len();
        self.replace(listed, started);
        Ok(n)
    }

    /// [`Inventory::refresh`] unless the snapshot is at most `max_age` old, **shared**: callers
    /// that find it stale at the same time wait for one refresh (the account's LIST pages) instead
    /// of each paying a `LIST ?name=` (issue 21: during a throttled backfill that cost 0.26-0.53
    /// calls per session). The first caller lists; the others find the fresh snapshot when they
    /// get the lock.
    pub async fn refresh_if_older<F, Fut>(
        &self,
        max_age: std::time::Duration,
        page: F,
    ) -> Result<(), CloudError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<(Vec<T>, Option<String>), CloudError>>,
    {
        let _one = self.refreshing.lock().await;
        if self.listed_within(max_age) {
            return Ok(());
        }
        self.refresh(page).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: &str, priority: i64) -> TrafficMirrorSession {
        TrafficMirrorSession {
            id: id.into(),
            priority,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn refresh_asks_for_each_page_by_marker_until_the_last() {
        let inv = Inventory::default();
        let mut asked = Vec::new();
        let n = inv
            .refresh(|marker: Option<String>| {
                asked.push(marker.clone());
                let page = match marker.as_deref() {
                    None => (vec![s("a", 1), s("b", 1)], Some("b".to_string())),
                    Some("b") => (vec![s("c", 1)], None),
                    Some(other) => panic!("unexpected marker {other}"),
                };
                std::future::ready(Ok(page))
            })
            .await
            .expect("listed");
        assert_eq!(n, 3);
        assert_eq!(asked, vec![None, Some("b".to_string())]);
        assert_eq!(inv.get("c"), Known::Present(s("c", 1)));
    }

    #[tokio::test]
    async fn a_stale_snapshot_is_refreshed_once_for_every_caller_waiting() {
        let inv = std::sync::Arc::new(Inventory::default());
        let pages = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let max_age = std::time::Duration::from_secs(60);
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (inv, pages) = (inv.clone(), pages.clone());
                tokio::spawn(async move {
                    inv.refresh_if_older(max_age, |_marker: Option<String>| {
                        pages.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        async {
                            tokio::task::yield_now().await;
                            Ok((vec![s("a", 1)], None))
                        }
                    })
                    .await
                })
            })
            .collect();
        for c in callers {
            c.await.expect("joined").expect("refreshed");
        }
        assert_eq!(
            pages.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "one LIST for all"
        );
        assert!(inv.listed_within(max_age));
        assert_eq!(inv.find(|x| x.id == "a").len(), 1);
    }

    #[tokio::test]
    async fn a_failed_page_leaves_the_snapshot_as_it_was() {
        let inv = Inventory::default();
        inv.replace(vec![s("a", 1)], Instant::now());
        let failed = inv
            .refresh(|marker: Option<String>| {
                std::future::ready(match marker {
                    None => Ok((vec![s("b", 1)], Some("b".to_string()))),
                    Some(_) => Err(CloudError::Decode {
                        status: 200,
                        message: "broken page".into(),
                        request_id: None,
                    }),
                })
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(inv.get("a"), Known::Present(s("a", 1)));
        assert_eq!(inv.get("b"), Known::Absent);
    }

    #[test]
    fn unknown_until_listed_then_absent() {
        let inv = Inventory::default();
        assert_eq!(inv.get("a"), Known::Unknown);
        inv.replace(vec![s("a", 1)], Instant::now());
        assert_eq!(inv.get("a"), Known::Present(s("a", 1)));
        assert_eq!(inv.get("b"), Known::Absent);
        assert_eq!(inv.len(), 1);
    }

    #[test]
    fn a_list_older_than_a_write_does_not_overwrite_it() {
        let inv = Inventory::default();
        let list_started = Instant::now();
        inv.record(&s("a", 2)); // our PUT answered after the LIST began
        inv.replace(vec![s("a", 1)], list_started);
        assert_eq!(inv.get("a"), Known::Present(s("a", 2)));
    }

    #[test]
    fn a_newer_list_replaces_and_drops_vanished_sessions() {
        let inv = Inventory::default();
        inv.record(&s("a", 2));
        inv.record(&s("gone", 1));
        let started = Instant::now();
        inv.replace(vec![s("a", 5)], started);
        assert_eq!(inv.get("a"), Known::Present(s("a", 5)));
        assert_eq!(inv.get("gone"), Known::Absent);
    }

    #[test]
    fn listed_within_tracks_the_last_successful_list() {
        let inv: Inventory = Inventory::default();
        assert!(!inv.listed_within(std::time::Duration::from_secs(60)));
        inv.replace(vec![], Instant::now());
        assert!(inv.listed_within(std::time::Duration::from_secs(60)));
    }

    #[test]
    fn listed_since_needs_a_list_that_began_later() {
        let inv: Inventory = Inventory::default();
        let began_before = Instant::now();
        let refused = Instant::now();
        assert!(!inv.listed_since(refused), "never listed");
        inv.replace(vec![], began_before);
        assert!(!inv.listed_since(refused), "began before");
        inv.replace(vec![], Instant::now() + std::time::Duration::from_millis(1));
        assert!(inv.listed_since(refused));
    }

    #[test]
    fn tombstones_beat_older_lists() {
        let inv = Inventory::default();
        let started = Instant::now();
        inv.forget("a");
        inv.replace(vec![s("a", 1)], started);
        assert_eq!(inv.get("a"), Known::Absent);
    }

    #[test]
    fn only_a_tombstone_says_gone() {
        let inv = Inventory::default();
        inv.replace(vec![s("a", 1)], Instant::now());
        assert!(!inv.said_gone("b"), "not listed is not the cloud's word");
        assert!(!inv.said_gone("a"));
        inv.forget("a");
        assert!(inv.said_gone("a"));
        inv.replace(vec![], Instant::now() + std::time::Duration::from_millis(1));
        assert!(!inv.said_gone("a"), "a newer LIST replaces the tombstone");
    }
}
