//! [`Lease`], the document that says which writer may move the pointer.
//!
//! A store has at most one lease. A watcher holds it for as long as it
//! runs, renewing it; a one-shot command (`publish`, `rollback`, `unpin`)
//! takes it, writes, and releases it. Taking it raises its generation, and
//! every pointer carries the generation of the lease its writer held: a
//! pointer is never replaced by one of a lower generation, so a writer
//! whose lease was taken over (a stalled watcher) can write nothing after
//! its successor has. This module is the document only; taking, renewing
//! and fencing are `edgeroute-control`'s `lease` module.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Who holds a lease: a long-running watcher, or a one-shot command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseRole {
    /// `edgeroute watch`: holds the lease while it runs. Another writer
    /// waits for it to end or forces it (`--force`).
    Watcher,
    /// A one-shot command: holds the lease for one write. Another writer
    /// waits for it to be released.
    Command,
}

/// The lease document, `lease.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds it, for people: the command, host and process.
    pub holder: String,
    /// A random token of this holding: two processes with the same name
    /// never mistake each other's lease for their own.
    pub token: String,
    pub role: LeaseRole,
    /// Raised by one every time the lease is taken.
    pub generation: u64,
    /// Until when it holds unless renewed (milliseconds since 1970, UTC).
    /// Writers' clocks are trusted to within a small part of a lease's
    /// duration (NTP).
    pub expires_at_ms: u64,
    /// Given back by its holder before expiring.
    #[serde(default)]
    pub released: bool,
}

impl Lease {
    /// Whether the lease still holds at `now`: not released, not expired.
    pub fn holds_at(&self, now: SystemTime) -> bool {
        !self.released && millis(now) < self.expires_at_ms
    }

    /// How long it still holds at `now` (zero if it does not).
    pub fn remaining_at(&self, now: SystemTime) -> Duration {
        match self.holds_at(now) {
            true => Duration::from_millis(self.expires_at_ms - millis(now)),
            false => Duration::ZERO,
        }
    }

    /// The expiry `ttl` after `now`, as the document writes it.
    pub fn expiry(now: SystemTime, ttl: Duration) -> u64 {
        millis(now).saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a lease serializes")
    }

    pub(crate) fn from_json(bytes: &[u8], what: &str) -> Result<Lease, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::BadLease { what: what.to_owned(), why: e.to_string() })
    }
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_until_it_expires_or_is_released() {
        let now = SystemTime::now();
        let mut lease = Lease {
            holder: "watch".into(),
            token: "t".into(),
            role: LeaseRole::Watcher,
            generation: 3,
            expires_at_ms: Lease::expiry(now, Duration::from_secs(2)),
            released: false,
        };
        assert!(lease.holds_at(now) && lease.remaining_at(now) == Duration::from_secs(2));
        assert!(!lease.holds_at(now + Duration::from_secs(2)));
        lease.released = true;
        assert!(!lease.holds_at(now) && lease.remaining_at(now).is_zero());
        let parsed = Lease::from_json(&lease.to_json(), "lease.json").unwrap();
        assert_eq!(parsed, lease);
        assert!(Lease::from_json(b"{}", "lease.json").unwrap_err().to_string().contains("not a valid lease"));
    }
}
