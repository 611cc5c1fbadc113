//! Taking, renewing and giving back a store's lease (the document is
//! `edgeroute_store::Lease`; `docs/publishing.md` says what it promises).
//!
//! Every writer of the pointer holds the lease while it writes, and writes
//! the lease's generation into the pointer; `publish.rs` refuses to replace
//! a pointer of a higher generation (the fence). So of two writers, the one
//! that took the lease last wins, whatever their clocks or pauses: a
//! watcher stalled past its lease finds, when it wakes, that it can write
//! nothing over its successor's pointers.

use std::time::{Duration, SystemTime};

use edgeroute_store::{Lease, LeaseRole, Store, StoreError, Version};

/// How a writer holds the lease.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// How long a lease holds unless renewed: how long a crashed watcher
    /// keeps others waiting.
    pub ttl: Duration,
    /// How often a watcher renews it (well under `ttl`).
    pub renew_every: Duration,
    /// Who takes it, for people reading the lease or a refusal.
    pub holder: String,
}

impl LeaseOptions {
    /// The defaults for a writer named `what` (`watch`, `publish`): a 30 s
    /// lease renewed every 10 s.
    pub fn named(what: &str) -> LeaseOptions {
        let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty());
        let host = host.or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()));
        LeaseOptions {
            ttl: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            holder: format!(
                "edgeroute {what} on {} (pid {})",
                host.as_deref().unwrap_or("an unnamed host"),
                std::process::id()
            ),
        }
    }
}

/// Why a lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "the store is leased to {} (generation {}) for another {:.1} s{}",
        .lease.holder, .lease.generation, .remaining.as_secs_f64(), hint(.lease.role)
    )]
    Held { lease: Lease, remaining: Duration },
    #[error("the store's lease was taken by {} (generation {})", .by.holder, .by.generation)]
    Lost { by: Lease },
    #[error("gave up taking the store's lease: other writers kept changing it")]
    Contention,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn hint(role: LeaseRole) -> &'static str {
    match role {
        LeaseRole::Watcher => {
            ": a watcher publishes this store; write through its table, or pass --force to write anyway \
             (it lasts until the table's next change; rollback pins to make it stay)"
        }
        LeaseRole::Command => "",
    }
}

/// A lease this process holds.
#[derive(Debug)]
pub struct HeldLease {
    lease: Lease,
    version: Version,
    ttl: Duration,
    /// The lease this one was forced over, if it still held.
    pub forced_over: Option<Lease>,
}

/// How many times a writer re-reads the lease after losing a swap of it.
const MAX_ATTEMPTS: u32 = 32;

impl HeldLease {
    /// Takes the store's lease: refused ([`LeaseError::Held`]) while another
    /// writer holds it, unless `force`. The generation is one above both the
    /// lease's and the current pointer's, so a lease document that was lost
    /// or deleted can never let a writer go below the pointer.
    pub async fn take(
        store: &Store,
        role: LeaseRole,
        options: &LeaseOptions,
        force: bool,
    ) -> Result<HeldLease, LeaseError> {
        // One token for every attempt: a swap whose reply was lost after it
        // committed is recognised as this taker's own on the next read.
        let token = format!("{:016x}", fastrand::u64(..));
        // Whom the last attempt forced over: kept only for a swap that
        // turns out to have committed (its reply lost).
        let mut forced_last = None;
        for _ in 0..MAX_ATTEMPTS {
            let current = store.read_lease().await?;
            let now = SystemTime::now();
            if let Some((lease, version)) = current.as_ref().filter(|(l, _)| l.token == token) {
                let (lease, version) = (lease.clone(), version.clone());
                return Ok(HeldLease { lease, version, ttl: options.ttl, forced_over: forced_last });
            }
            let mut forced_over = None;
            if let Some((lease, _)) = current.as_ref().filter(|(l, _)| l.holds_at(now)) {
                if !force {
                    return Err(LeaseError::Held { lease: lease.clone(), remaining: lease.remaining_at(now) });
                }
                forced_over = Some(lease.clone());
            }
            let pointer = store.read_pointer().await?.map_or(0, |(p, _)| p.generation);
            let lease = Lease {
                holder: options.holder.clone(),
                token: token.clone(),
                role,
                generation: current.as_ref().map_or(0, |(l, _)| l.generation).max(pointer) + 1,
                expires_at_ms: Lease::expiry(now, options.ttl),
                released: false,
            };
            let expected = current.as_ref().map(|(_, v)| v);
            if let Some(version) = store.replace_lease(&lease, expected).await? {
                return Ok(HeldLease { lease, version, ttl: options.ttl, forced_over });
            }
            forced_last = forced_over;
        }
        Err(LeaseError::Contention)
    }

    /// [`take`](Self::take) for a one-shot command: a lease held by another
    /// command is waited for (it is given back within moments); one held
    /// by a watcher is refused unless `force`.
    pub async fn take_for_command(store: &Store, options: &LeaseOptions, force: bool) -> Result<HeldLease, LeaseError> {
        loop {
            match HeldLease::take(store, LeaseRole::Command, options, force).await {
                Err(LeaseError::Held { lease, remaining }) if lease.role == LeaseRole::Command => {
                    let wait = remaining.min(Duration::from_millis(50));
                    tokio::time::sleep(wait.mul_f64(0.5 + fastrand::f64())).await;
                }
                other => return other,
            }
        }
    }

    /// The generation every pointer written under this lease carries.
    pub fn generation(&self) -> u64 {
        self.lease.generation
    }

    /// Whether the lease still holds by this process's own record (a
    /// writer that cannot renew stops writing when it runs out).
    pub fn holds(&self) -> bool {
        self.lease.holds_at(SystemTime::now())
    }

    /// How long it still holds by this process's own record.
    pub fn remaining(&self) -> Duration {
        self.lease.remaining_at(SystemTime::now())
    }

    /// When it runs out unless renewed (milliseconds since 1970).
    pub fn expires_at_ms(&self) -> u64 {
        self.lease.expires_at_ms
    }

    /// Extends the lease by its duration from now, if it is still ours:
    /// [`LeaseError::Lost`] if another writer took it.
    pub async fn renew(&mut self, store: &Store) -> Result<(), LeaseError> {
        let renewed = Lease { expires_at_ms: Lease::expiry(SystemTime::now(), self.ttl), ..self.lease.clone() };
        if let Some(version) = store.replace_lease(&renewed, Some(&self.version)).await? {
            self.lease = renewed;
            self.version = version;
            return Ok(());
        }
        match store.read_lease().await? {
            // The swap failed but the document is ours (a reply lost after the write).
            Some((now, version)) if now.token == self.lease.token && now.generation == self.lease.generation => {
                self.lease = now;
                self.version = version;
                Ok(())
            }
            Some((by, _)) => Err(LeaseError::Lost { by }),
            None => Err(LeaseError::Lost {
                by: Lease { holder: "nobody (the lease was deleted)".into(), ..self.lease.clone() },
            }),
        }
    }

    /// Gives the lease back, so that the next writer need not wait for it
    /// to expire; true if it did. A lease already taken by another is left
    /// alone (false). A version gone stale (a renewal cut short) is read again.
    pub async fn release(self, store: &Store) -> Result<bool, StoreError> {
        let released =
            Lease { released: true, expires_at_ms: Lease::expiry(SystemTime::now(), Duration::ZERO), ..self.lease };
        let mut version = self.version;
        for _ in 0..MAX_ATTEMPTS {
            if store.replace_lease(&released, Some(&version)).await?.is_some() {
                return Ok(true);
            }
            match store.read_lease().await? {
                Some((now, v)) if now.token == released.token && !now.released => version = v,
                _ => return Ok(false),
            }
        }
        Ok(false)
    }
}
