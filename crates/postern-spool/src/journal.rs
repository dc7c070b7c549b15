//! The step journal: append-only records of the pipeline steps of one
//! message that reached a final outcome. Pure encoding and decoding; the
//! format is described in the crate documentation.
//!
//! Reading tells a torn tail from corruption. Every append is fsync'd before
//! `record_step` returns, `open` cuts a torn tail off before anything is
//! appended again, and a failed append is cut off at once; so a damaged
//! record can only be the last thing in a journal, unless the disk lied. The
//! reader therefore stops at the first record that does not check, and
//! looks further: if any complete, valid record follows, the journal is
//! corrupt (an error: dropping later steps would repeat them); if none
//! does, the damaged bytes are a torn append and are ignored.

use std::fmt;
use std::io;

/// First bytes of every step journal.
pub(crate) const MAGIC: [u8; 8] = *b"POSTERNJ";
/// Format version written by this code.
pub(crate) const VERSION: u32 = 1;
/// Magic and version.
pub(crate) const HEADER_LEN: usize = 12;
/// First bytes of every record.
pub(crate) const RECORD_MARKER: [u8; 4] = *b"STEP";
/// Marker, key length, outcome length.
const RECORD_HEAD_LEN: usize = 12;
/// Record head and CRC32.
pub(crate) const RECORD_OVERHEAD: usize = RECORD_HEAD_LEN + 4;
/// Largest step key.
pub const MAX_KEY_LEN: usize = 4096;
/// Largest step outcome.
pub const MAX_OUTCOME_LEN: usize = 16 << 20;

pub(crate) fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// One record; the caller has checked the lengths against the maxima.
pub(crate) fn encode_record(key: &str, outcome: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(RECORD_OVERHEAD + key.len() + outcome.len());
    r.extend_from_slice(&RECORD_MARKER);
    r.extend_from_slice(&(key.len() as u32).to_le_bytes());
    r.extend_from_slice(&(outcome.len() as u32).to_le_bytes());
    r.extend_from_slice(key.as_bytes());
    r.extend_from_slice(outcome);
    let crc = crc32fast::hash(&r);
    r.extend_from_slice(&crc.to_le_bytes());
    r
}

/// A journal as read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Journal {
    /// The steps, in the order they were recorded.
    pub steps: Vec<(String, Vec<u8>)>,
    /// Length of the valid prefix: header and whole records.
    pub valid_len: u64,
    /// Bytes after the valid prefix: a torn append, ignored.
    pub torn_bytes: u64,
}

/// A journal that cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JournalError {
    UnsupportedVersion(u32),
    /// A damaged record followed by a valid one.
    Corrupt {
        offset: u64,
    },
    /// A record that checks but whose key is not UTF-8.
    KeyNotUtf8 {
        offset: u64,
    },
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::UnsupportedVersion(v) => {
                write!(f, "unsupported step journal version {v}")
            }
            JournalError::Corrupt { offset } => write!(
                f,
                "step journal damaged at byte {offset} with valid records after it"
            ),
            JournalError::KeyNotUtf8 { offset } => {
                write!(
                    f,
                    "step journal record at byte {offset} has a key that is not UTF-8"
                )
            }
        }
    }
}

impl std::error::Error for JournalError {}

impl From<JournalError> for io::Error {
    fn from(e: JournalError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The record at `off`, if a whole valid one is there: key, outcome, and
/// the offset after it.
fn record_at(bytes: &[u8], off: usize) -> Option<(&[u8], &[u8], usize)> {
    let head = bytes.get(off..off.checked_add(RECORD_HEAD_LEN)?)?;
    if head[..4] != RECORD_MARKER {
        return None;
    }
    let key_len = u32::from_le_bytes(head[4..8].try_into().ok()?) as usize;
    let outcome_len = u32::from_le_bytes(head[8..12].try_into().ok()?) as usize;
    if key_len > MAX_KEY_LEN || outcome_len > MAX_OUTCOME_LEN {
        return None;
    }
    let body_end = off + RECORD_HEAD_LEN + key_len + outcome_len;
    let end = body_end + 4;
    let crc_bytes = bytes.get(body_end..end)?;
    let recorded = u32::from_le_bytes(crc_bytes.try_into().ok()?);
    if crc32fast::hash(&bytes[off..body_end]) != recorded {
        return None;
    }
    let key_at = off + RECORD_HEAD_LEN;
    Some((
        &bytes[key_at..key_at + key_len],
        &bytes[key_at + key_len..body_end],
        end,
    ))
}

/// Whether a whole valid record starts anywhere at or after `from`.
fn any_record_from(bytes: &[u8], from: usize) -> bool {
    (from..bytes.len().saturating_sub(RECORD_OVERHEAD - 1))
        .any(|p| bytes[p..].starts_with(&RECORD_MARKER) && record_at(bytes, p).is_some())
}

/// Reads a whole journal.
pub(crate) fn parse(bytes: &[u8]) -> Result<Journal, JournalError> {
    let len = bytes.len() as u64;
    if bytes.len() < HEADER_LEN || bytes[..HEADER_LEN] != header() {
        if bytes.len() >= HEADER_LEN && bytes[..8] == MAGIC {
            let v = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
            return Err(JournalError::UnsupportedVersion(v));
        }
        // The first append (header and first record) was torn.
        if any_record_from(bytes, 0) {
            return Err(JournalError::Corrupt { offset: 0 });
        }
        return Ok(Journal {
            steps: Vec::new(),
            valid_len: 0,
            torn_bytes: len,
        });
    }
    let mut steps = Vec::new();
    let mut off = HEADER_LEN;
    while off < bytes.len() {
        let Some((key, outcome, next)) = record_at(bytes, off) else {
            break;
        };
        let key = std::str::from_utf8(key)
            .map_err(|_| JournalError::KeyNotUtf8 { offset: off as u64 })?;
        steps.push((key.to_owned(), outcome.to_vec()));
        off = next;
    }
    if off < bytes.len() && any_record_from(bytes, off + 1) {
        return Err(JournalError::Corrupt { offset: off as u64 });
    }
    Ok(Journal {
        steps,
        valid_len: off as u64,
        torn_bytes: len - off as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testrand::Rng;

    fn journal(steps: &[(&str, &[u8])]) -> Vec<u8> {
        let mut j = header().to_vec();
        for (k, o) in steps {
            j.extend_from_slice(&encode_record(k, o));
        }
        j
    }

    #[test]
    fn round_trip() {
        let j = journal(&[
            ("archive:a-1", b"{\"ok\":true}"),
            ("relay:r-1", b""),
            ("", b"x"),
        ]);
        let p = parse(&j).unwrap();
        assert_eq!(
            p.steps,
            vec![
                ("archive:a-1".to_owned(), b"{\"ok\":true}".to_vec()),
                ("relay:r-1".to_owned(), Vec::new()),
                (String::new(), b"x".to_vec()),
            ]
        );
        assert_eq!(p.valid_len, j.len() as u64);
        assert_eq!(p.torn_bytes, 0);
        assert_eq!(parse(&[]).unwrap(), Journal::default());
    }

    #[test]
    fn a_torn_last_record_keeps_the_earlier_ones() {
        let two = journal(&[("a", b"1"), ("b", b"2")]);
        let three = journal(&[("a", b"1"), ("b", b"2"), ("c", b"three")]);
        for cut in two.len()..three.len() {
            let p = parse(&three[..cut]).unwrap();
            assert_eq!(p.steps.len(), 2, "cut at {cut}");
            assert_eq!(p.valid_len, two.len() as u64);
            assert_eq!(p.torn_bytes, (cut - two.len()) as u64);
        }
        // A torn append whose blocks came back as zeros, or with one byte wrong.
        let mut zeros = two.clone();
        zeros.extend_from_slice(&[0u8; 40]);
        assert_eq!(parse(&zeros).unwrap().steps.len(), 2);
        let mut bad = three.clone();
        let n = bad.len();
        bad[n - 2] ^= 1;
        assert_eq!(parse(&bad).unwrap().steps.len(), 2);
        // A torn first append: part of the header, or of the first record.
        let one = journal(&[("a", b"1")]);
        for cut in 0..one.len() {
            let p = parse(&one[..cut]).unwrap();
            assert!(p.steps.is_empty(), "cut at {cut}");
            assert_eq!(
                p.valid_len,
                if cut >= HEADER_LEN {
                    HEADER_LEN as u64
                } else {
                    0
                }
            );
        }
    }

    #[test]
    fn damage_followed_by_a_valid_record_is_corruption() {
        let j = journal(&[("a", b"1"), ("b", b"2"), ("c", b"3")]);
        let second = HEADER_LEN + encode_record("a", b"1").len();
        let mut bad = j.clone();
        bad[second + RECORD_HEAD_LEN] ^= 0x40; // the key of the second record
        assert_eq!(
            parse(&bad).unwrap_err(),
            JournalError::Corrupt {
                offset: second as u64
            }
        );
        let mut bad_header = j.clone();
        bad_header[0] = b'X';
        assert_eq!(
            parse(&bad_header).unwrap_err(),
            JournalError::Corrupt { offset: 0 }
        );
        let mut v2 = j.clone();
        v2[8] = 2;
        assert_eq!(parse(&v2).unwrap_err(), JournalError::UnsupportedVersion(2));
    }

    /// Fuzz-style: random bytes, and valid journals with random damage,
    /// never make the reader panic; a cut journal keeps a prefix of its
    /// steps.
    #[test]
    fn random_input_is_an_error_never_a_panic() {
        let mut rng = Rng::new(0x5EED_0002);
        for _ in 0..20_000 {
            let len = rng.below(120) as usize;
            let mut bytes = rng.bytes(len);
            if rng.below(2) == 0 && bytes.len() >= HEADER_LEN {
                bytes[..HEADER_LEN].copy_from_slice(&header());
            }
            for _ in 0..rng.below(3) {
                if bytes.len() >= 4 {
                    let at = rng.below(bytes.len() as u64 - 3) as usize;
                    bytes[at..at + 4].copy_from_slice(&RECORD_MARKER);
                }
            }
            if let Ok(j) = parse(&bytes) {
                assert_eq!(j.valid_len + j.torn_bytes, bytes.len() as u64);
            }
        }
        for _ in 0..3_000 {
            let n = 1 + rng.below(5) as usize;
            let steps: Vec<(String, Vec<u8>)> = (0..n)
                .map(|i| (format!("step:{i}"), rng.some_bytes(30)))
                .collect();
            let mut j = header().to_vec();
            for (k, o) in &steps {
                j.extend_from_slice(&encode_record(k, o));
            }
            let cut = rng.below(j.len() as u64 + 1) as usize;
            let p = parse(&j[..cut]).unwrap();
            assert_eq!(p.steps[..], steps[..p.steps.len()]);
            let i = rng.below(j.len() as u64) as usize;
            j[i] ^= 1 << rng.below(8);
            let _ = parse(&j);
        }
    }
}
