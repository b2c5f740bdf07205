//! When to refresh temporary credentials (pure): parse `expires_at`, decide between using the
//! cached credential, refreshing it, or waiting out the cooldown after a failed refresh.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// The SDKs refresh when less than this remains.
pub const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(40 * 60);

/// Parses IAM's and the metadata service's `expires_at` (`%Y-%m-%dT%H:%M:%S.%fZ`, UTC). The
/// fraction is optional here (the Python SDK requires it, but nothing is lost by accepting its
/// absence), and an RFC 3339 offset is accepted too.
pub fn parse_expires_at(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Some(naive) = s.strip_suffix('Z') {
        for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(naive, format) {
                return Some(t.and_utc());
            }
        }
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// How long before expiry a credential obtained at `obtained_at` is refreshed: a quarter of its
/// lifetime, at most 40 minutes (so a 1 h credential is refreshed 15 min ahead, a 24 h one 40 min
/// ahead, a 4 s one 1 s ahead).
pub fn refresh_margin(obtained_at: DateTime<Utc>, expires_at: DateTime<Utc>) -> Duration {
    let lifetime = (expires_at - obtained_at).to_std().unwrap_or_default();
    (lifetime / 4).min(MAX_REFRESH_MARGIN)
}

/// What the cached state is at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cached {
    /// When the credential was obtained.
    pub obtained_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// What a caller does with the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The cached credential is fresh: use it.
    Use,
    /// Refresh now (nothing cached, or inside the refresh margin), outside any cooldown.
    Refresh,
    /// A refresh failed recently: use the cached credential, still valid, without asking again.
    UseDuringCooldown,
    /// A refresh failed recently and nothing valid is cached: report the failure again.
    FailDuringCooldown,
}

/// The decision at `now` for a cache holding `cached`, whose last refresh failed at `failed_at`
/// (cleared by a success), with `cooldown` between failed refreshes.
pub fn decide(
    now: DateTime<Utc>,
    cached: Option<Cached>,
    failed_at: Option<DateTime<Utc>>,
    cooldown: Duration,
) -> Decision {
    let valid = cached.filter(|c| now < c.expires_at);
    let fresh = valid.filter(|c| {
        let margin = chrono::Duration::from_std(refresh_margin(c.obtained_at, c.expires_at))
            .unwrap_or_default();
        now < c.expires_at - margin
    });
    if fresh.is_some() {
        return Decision::Use;
    }
    let cooling = failed_at.is_some_and(|f| {
        let cooldown = chrono::Duration::from_std(cooldown).unwrap_or_default();
        now >= f && now < f + cooldown
    });
    match (cooling, valid) {
        (false, _) => Decision::Refresh,
        (true, Some(_)) => Decision::UseDuringCooldown,
        (true, None) => Decision::FailDuringCooldown,
    }
}

/// Whether an answer to a request signed with refreshable (temporary) credentials says the
/// credential itself was refused, so one refresh and one retry may help: a 401 (expired or
/// unknown security token, or a signature by an AK the gateway no longer knows). Nothing else:
/// a 403 is a permission, retrying with new keys changes nothing.
pub fn refresh_on(status: u16, refreshable: bool) -> bool {
    refreshable && status == 401
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn parses_expires_at() {
        let table = [
            ("2020-01-08T03:50:07.574000Z", Some((1578455407, 574))),
            ("2020-01-08T03:50:07Z", Some((1578455407, 0))),
            ("2020-01-08T03:50:07.5Z", Some((1578455407, 500))),
            ("2020-01-08T03:50:07+00:00", Some((1578455407, 0))),
            ("2020-01-08 03:50:07", None),
            ("", None),
            ("soon", None),
        ];
        for (s, want) in table {
            let got = parse_expires_at(s).map(|t| (t.timestamp(), t.timestamp_subsec_millis()));
            assert_eq!(got, want, "{s}");
        }
    }

    #[test]
    fn margin_is_a_quarter_of_the_lifetime_at_most_40_minutes() {
        let table = [
            (3600, 900),
            (86400, 2400),
            (900, 225),
            (4, 1),
            (0, 0),
            (-5, 0),
        ];
        for (lifetime, margin) in table {
            assert_eq!(
                refresh_margin(at(0), at(lifetime)),
                Duration::from_secs(margin),
                "lifetime {lifetime}"
            );
        }
    }

    #[test]
    fn decisions() {
        let hour = Some(Cached {
            obtained_at: at(0),
            expires_at: at(3600),
        });
        let cooldown = Duration::from_secs(10);
        let table = [
            (at(0), None, None, Decision::Refresh),
            (at(100), hour, None, Decision::Use),
            (at(2699), hour, None, Decision::Use),
            (at(2700), hour, None, Decision::Refresh),
            (at(2700), hour, Some(at(2695)), Decision::UseDuringCooldown),
            (at(2700), hour, Some(at(2690)), Decision::Refresh),
            (at(3600), hour, Some(at(3595)), Decision::FailDuringCooldown),
            (at(3600), hour, None, Decision::Refresh),
            (at(5), None, Some(at(0)), Decision::FailDuringCooldown),
            (at(10), None, Some(at(0)), Decision::Refresh),
            // a failure recorded "in the future" (clock stepped back) does not block forever
            (at(0), None, Some(at(100)), Decision::Refresh),
        ];
        for (now, cached, failed, want) in table {
            assert_eq!(
                decide(now, cached, failed, cooldown),
                want,
                "{now} {failed:?}"
            );
        }
    }

    #[test]
    fn only_a_401_with_temporary_credentials_refreshes() {
        let table = [
            (401, true, true),
            (401, false, false),
            (403, true, false),
            (200, true, false),
            (500, true, false),
        ];
        for (status, refreshable, want) in table {
            assert_eq!(
                refresh_on(status, refreshable),
                want,
                "{status} {refreshable}"
            );
        }
    }
}
