//! Queue ids: the name of a message in the spool, in logs and in the
//! `250 2.0.0 Ok: queued as <id>` reply.
//!
//! Sixteen characters of `[0-9A-Z]`: eleven base-36 digits of the creation
//! time in microseconds since the Unix epoch (enough until the year 6000),
//! then five base-36 digits chosen at random when the spool is opened. Ids
//! of one spool are strictly increasing: a clock that stands still or steps
//! back is pushed forward by one microsecond, and `open` starts after the
//! newest id already on disk. So the ids sort by creation time, as text, and
//! never repeat across restarts; the random part keeps them apart between
//! processes and machines.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TIME_DIGITS: usize = 11;
const SALT_DIGITS: usize = 5;
/// Length of a queue id, in characters.
pub const QUEUE_ID_LEN: usize = TIME_DIGITS + SALT_DIGITS;
const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The name of a spooled message. See the module documentation for its form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(String);

/// A string that is not a queue id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidQueueId;

impl fmt::Display for InvalidQueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a queue id is {QUEUE_ID_LEN} characters of 0-9 and A-Z")
    }
}

impl std::error::Error for InvalidQueueId {}

impl QueueId {
    /// Parses an id, for example a file name in the spool. Anything that is
    /// not exactly 16 characters of `[0-9A-Z]` is refused.
    pub fn parse(s: &str) -> Option<QueueId> {
        let ok = s.len() == QUEUE_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
        ok.then(|| QueueId(s.to_owned()))
    }

    /// The id as text (also the file name).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The creation time encoded in the id, to the microsecond.
    pub fn created(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.micros())
    }

    /// Microseconds since the Unix epoch, as encoded in the id.
    pub(crate) fn micros(&self) -> u64 {
        self.0.as_bytes()[..TIME_DIGITS]
            .iter()
            .fold(0u64, |acc, &b| acc * 36 + digit_value(b))
    }

    fn from_parts(micros: u64, salt: &[u8; SALT_DIGITS]) -> QueueId {
        let mut text = [b'0'; QUEUE_ID_LEN];
        let mut n = micros;
        for slot in text[..TIME_DIGITS].iter_mut().rev() {
            *slot = DIGITS[(n % 36) as usize];
            n /= 36;
        }
        text[TIME_DIGITS..].copy_from_slice(salt);
        // Only ASCII digits and letters were written.
        QueueId(text.iter().map(|&b| b as char).collect())
    }
}

fn digit_value(b: u8) -> u64 {
    match b {
        b'0'..=b'9' => u64::from(b - b'0'),
        _ => u64::from(b - b'A') + 10,
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueId({})", self.0)
    }
}

impl FromStr for QueueId {
    type Err = InvalidQueueId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QueueId::parse(s).ok_or(InvalidQueueId)
    }
}

impl AsRef<str> for QueueId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Hands out strictly increasing ids for one spool.
pub(crate) struct IdGen {
    last_micros: AtomicU64,
    salt: [u8; SALT_DIGITS],
}

/// Largest time the eleven digits can hold.
const MAX_MICROS: u64 = 36u64.pow(TIME_DIGITS as u32) - 1;

impl IdGen {
    /// `after` is the time of the newest id already on disk: every new id
    /// is later.
    pub(crate) fn new(after: u64) -> IdGen {
        IdGen {
            last_micros: AtomicU64::new(after),
            salt: random_salt(),
        }
    }

    pub(crate) fn next(&self) -> QueueId {
        let now = now_micros();
        let prev = self
            .last_micros
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(now.max(last.saturating_add(1)).min(MAX_MICROS))
            })
            .unwrap_or_else(|last| last);
        let micros = now.max(prev.saturating_add(1)).min(MAX_MICROS);
        QueueId::from_parts(micros, &self.salt)
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Five random base-36 digits. The standard library's `RandomState` is
/// seeded from the operating system's random source.
fn random_salt() -> [u8; SALT_DIGITS] {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_micros());
    h.write_u32(std::process::id());
    let mut n = h.finish();
    let mut salt = [b'0'; SALT_DIGITS];
    for slot in &mut salt {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    salt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_16_chars_increasing_and_parse_back() {
        let ids = IdGen::new(0);
        let mut prev: Option<QueueId> = None;
        for _ in 0..10_000 {
            let id = ids.next();
            assert_eq!(id.as_str().len(), QUEUE_ID_LEN);
            assert_eq!(QueueId::parse(id.as_str()), Some(id.clone()));
            if let Some(p) = &prev {
                assert!(p < &id, "{p} then {id}");
                assert!(p.micros() < id.micros());
            }
            prev = Some(id);
        }
    }

    #[test]
    fn time_round_trips_and_orders_as_text() {
        let salt = *b"ABCDE";
        for micros in [0, 1, 35, 36, 1_750_000_000_000_000, MAX_MICROS] {
            let id = QueueId::from_parts(micros, &salt);
            assert_eq!(id.micros(), micros);
        }
        let a = QueueId::from_parts(1_750_000_000_000_000, b"ZZZZZ");
        let b = QueueId::from_parts(1_750_000_000_000_001, b"00000");
        assert!(a < b);
    }

    #[test]
    fn starts_after_the_newest_id_on_disk() {
        let future = now_micros() + 3_600_000_000;
        let id = IdGen::new(future).next();
        assert_eq!(id.micros(), future + 1);
    }

    #[test]
    fn refuses_what_is_not_an_id() {
        for s in [
            "",
            "abc",
            "0123456789abcdef",
            "0123456789ABCDE",
            "0123456789ABCDEF0",
            "0123456789ABCDE.",
            "0123456789ABCDÉ",
        ] {
            assert_eq!(QueueId::parse(s), None, "{s:?}");
            assert!(s.parse::<QueueId>().is_err());
        }
        assert!(QueueId::parse("0123456789ABCDEF").is_some());
    }
}
