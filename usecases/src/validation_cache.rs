//! What a license validation needs to know of a key, kept for the hot path
//! (`POST /api/v1/license/validate`): per keyed hash, the license, its
//! subscription and its organization's name, as the read-model tables had
//! them. A hit saves the three table reads of a validation; the append of
//! the validation event (and the exact daily cap the writer enforces on
//! it) happens on every request, hit or not.
//!
//! **Bounded.** At most [`VALIDATION_CACHE_ENTRIES_MAX`] entries, least
//! recently used dropped first.
//!
//! **Read-your-writes.** An entry remembers the sequence the read models
//! had applied *before* it was read from them ([`Cached::filled_at`]); a
//! validation uses it only if that is at least the key's floor
//! (`Acknowledged::floor`), which every command this node answered raises
//! (a revocation, a release, a supersede, a subscription change). So a key
//! revoked through this node is refused by its next validation here.
//!
//! **Changes made through other nodes.** An entry is used for at most
//! [`VALIDATION_CACHE_TTL`] from when its reading from the tables began. A
//! change another node
//! appended reaches this node's tables within the follower's lag (at once
//! on PostgreSQL, which notifies; at most `FOLLOW_POLL_INTERVAL`, 250 ms,
//! otherwise), so a key revoked elsewhere is refused here within
//! TTL + lag, 750 ms, under the 1 s the product promises. Chosen over
//! invalidating entries from a feed of changed licenses: nothing to follow
//! beyond what the tables already do, and subscriptions and organizations
//! are covered alike. The price: only a key validated more than once per
//! TTL hits (many deployments behind one key, bursts, benchmarks).
//!
//! The cache is the node's (`Ledger::validation_cache`), so two nodes in
//! one process, as tests run them, never share one.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use domain::license::License;
use domain::record::Hash;
use domain::subscription::Subscription;
use domain::{LicenseId, OrganizationId};
use hashlink::LinkedHashMap;

/// Keys whose validation facts a node keeps. An entry is a license's and a
/// subscription's state (a few kilobytes at most: deployments are capped by
/// the subscription), so a full cache is some tens of megabytes; more keys
/// than this validated within one TTL is far beyond the product's size.
pub const VALIDATION_CACHE_ENTRIES_MAX: usize = 10_000;
/// How long an entry is used after it was read from the tables: with the
/// follower's lag, under the 1 s within which a key revoked through another
/// node must be refused on this one.
pub const VALIDATION_CACHE_TTL: Duration = Duration::from_millis(500);

/// What a validation needs of a key, as the tables had it.
#[derive(Debug, Clone)]
pub struct KeyFacts {
    pub key_hash: Hash,
    pub license_id: LicenseId,
    pub organization_id: OrganizationId,
    pub license: License,
    pub subscription: Subscription,
    pub organization_name: Option<String>,
}

/// An entry found in the cache.
#[derive(Debug, Clone)]
pub struct Cached {
    pub facts: Arc<KeyFacts>,
    /// The sequence the read models had applied before the facts were read.
    pub filled_at: u64,
}

struct Entry {
    cached: Cached,
    filled: Instant,
}

/// The validation facts of recently validated keys, bounded and expiring.
pub struct ValidationCache {
    entries: Mutex<LinkedHashMap<Hash, Entry>>,
    capacity: usize,
    ttl: Duration,
}

impl Default for ValidationCache {
    fn default() -> Self {
        Self::new(VALIDATION_CACHE_ENTRIES_MAX, VALIDATION_CACHE_TTL)
    }
}

impl ValidationCache {
    /// A cache of at most `capacity` entries (at least one), each used for
    /// `ttl` after it was filled.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self { entries: Mutex::new(LinkedHashMap::new()), capacity: capacity.max(1), ttl }
    }

    fn lock(&self) -> MutexGuard<'_, LinkedHashMap<Hash, Entry>> {
        // Whole entries go in and out: a panic elsewhere leaves none half-written.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry of `key_hash` if it was filled less than the TTL ago (an
    /// older one is dropped), as the most recently used. The caller checks
    /// [`Cached::filled_at`] against the key's floor.
    pub fn get(&self, key_hash: &Hash) -> Option<Cached> {
        let mut entries = self.lock();
        let fresh = entries.get(key_hash).map(|entry| entry.filled.elapsed() < self.ttl)?;
        if !fresh {
            entries.remove(key_hash);
            return None;
        }
        entries.to_back(key_hash).map(|entry| entry.cached.clone())
    }

    /// Keeps `facts`, read from tables that had applied `filled_at`, as the
    /// most recently used entry; drops the least recently used past the bound.
    /// `read_from`: when the reading began, which the TTL counts from.
    pub fn insert(&self, facts: Arc<KeyFacts>, filled_at: u64, read_from: Instant) {
        let key_hash = facts.key_hash;
        let entry = Entry { cached: Cached { facts, filled_at }, filled: read_from };
        let mut entries = self.lock();
        // Concurrent fills: the one read from the newer tables stays.
        if entries.get(&key_hash).is_some_and(|known| known.cached.filled_at > filled_at) {
            return;
        }
        entries.insert(key_hash, entry);
        while entries.len() > self.capacity {
            if entries.pop_front().is_none() {
                break;
            }
        }
    }

    /// Forgets a key (its license changed through this node).
    pub fn remove(&self, key_hash: &Hash) {
        self.lock().remove(key_hash);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(n: u8) -> Arc<KeyFacts> {
        Arc::new(KeyFacts {
            key_hash: Hash([n; 32]),
            license_id: LicenseId(uuid::Uuid::from_u128(u128::from(n))),
            organization_id: OrganizationId(uuid::Uuid::from_u128(1)),
            license: License::default(),
            subscription: Subscription::default(),
            organization_name: None,
        })
    }

    #[test]
    fn the_least_recently_used_goes_past_the_bound() {
        let cache = ValidationCache::new(3, Duration::from_secs(60));
        for n in 0..3 {
            cache.insert(facts(n), 10, Instant::now());
        }
        assert!(cache.get(&Hash([0; 32])).is_some(), "0 is now the most recently used");
        cache.insert(facts(3), 11, Instant::now());
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&Hash([1; 32])).is_none(), "1 was the least recently used");
        assert_eq!(cache.get(&Hash([0; 32])).unwrap().filled_at, 10);
        for n in 10..200 {
            cache.insert(facts(n), 12, Instant::now());
        }
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn an_entry_expires_after_the_ttl() {
        let cache = ValidationCache::new(3, Duration::from_millis(30));
        cache.insert(facts(1), 5, Instant::now());
        assert!(cache.get(&Hash([1; 32])).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get(&Hash([1; 32])).is_none());
        assert!(cache.is_empty(), "an expired entry is dropped");
        cache.insert(facts(2), 5, Instant::now());
        cache.remove(&Hash([2; 32]));
        assert!(cache.get(&Hash([2; 32])).is_none());
    }
}
