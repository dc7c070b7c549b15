//! A bounded cache of DNS answers, valid until their TTL runs out, in the
//! shape mail-auth asks for (`ResolverCache`). mail-auth stores parsed
//! records in it (an SPF record, a DKIM key, a DMARC record, addresses).

use mail_auth::{MX, RecordSet, ResolverCache, Txt};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

/// Entries per cache (per record kind).
pub(crate) const CAPACITY: usize = 4096;

/// At most `capacity` entries. When full, expired entries go first, then
/// the one that would expire soonest.
pub(crate) struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        // A panic while holding the lock leaves a consistent map.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.lock();
        match entries.get(key) {
            Some((value, until)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(key).map(|(value, _)| value)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let now = Instant::now();
        if valid_until <= now {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.capacity {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, (_, until))| *until)
                    .map(|(k, _)| k.clone());
                if let Some(soonest) = soonest {
                    entries.remove(&soonest);
                }
            }
        }
        entries.insert(key, (value, valid_until));
    }
}

/// One cache per kind of answer mail-auth looks up.
pub(crate) struct Caches {
    pub(crate) txt: TtlCache<Box<str>, Txt>,
    pub(crate) mx: TtlCache<Box<str>, RecordSet<MX>>,
    pub(crate) ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    pub(crate) ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    pub(crate) ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
}

impl Caches {
    pub(crate) fn new(capacity: usize) -> Caches {
        Caches {
            txt: TtlCache::new(capacity),
            mx: TtlCache::new(capacity),
            ipv4: TtlCache::new(capacity),
            ipv6: TtlCache::new(capacity),
            ptr: TtlCache::new(capacity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expires_and_stays_bounded() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(3);
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        cache.insert("a.".into(), 1, later);
        assert_eq!(cache.get("a."), Some(1));
        // Already expired: not stored.
        cache.insert("b.".into(), 2, now);
        assert_eq!(cache.get("b."), None);
        cache.insert("b.".into(), 2, later + Duration::from_secs(1));
        cache.insert("c.".into(), 3, later + Duration::from_secs(2));
        cache.insert("d.".into(), 4, later + Duration::from_secs(3));
        assert_eq!(cache.len(), 3);
        // The one expiring soonest ("a.") made room.
        assert_eq!(cache.get("a."), None);
        assert_eq!(cache.get("d."), Some(4));
        assert_eq!(cache.remove("d."), Some(4));
        assert_eq!(cache.len(), 2);
    }
}
