//! Encryption at rest: AES-256-GCM (ring) of a body object.
//!
//! An encrypted object is: [`MAGIC`], one byte `n`, `n` bytes of key id
//! (UTF-8), a 12-byte random nonce, then the ciphertext with its 16-byte
//! tag. The associated data is that header followed by the archived
//! message id, so the key id cannot be altered and a body cannot be passed
//! off as another message's. Nonces are random (96 bits); NIST SP 800-38D
//! allows 2^32 random nonces per key, so rotate keys (a new id; keep the
//! old one configured for reading) well before that many messages.

use std::fmt;
use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::ArchiveError;

/// The first bytes of an encrypted body object.
pub(crate) const MAGIC: &[u8] = b"POSTERN-ARCHIVE-AES256GCM\n";

/// A 256-bit key and the id it is known by (recorded with each body).
#[derive(Clone)]
pub struct EncryptionKey {
    id: String,
    key: LessSafeKey,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl EncryptionKey {
    /// A key from its 32 bytes. The id must be 1 to 255 bytes; it is not
    /// secret (it is written in clear in every object).
    pub fn from_bytes(id: &str, key: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("AES-256 key is 32 bytes");
        EncryptionKey {
            id: id.to_owned(),
            key: LessSafeKey::new(unbound),
        }
    }

    /// A key from a file holding 32 raw bytes or 64 hexadecimal characters
    /// (surrounding white space ignored).
    pub fn from_file(id: &str, path: &Path) -> Result<Self, String> {
        check_id(id)?;
        let data = std::fs::read(path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
        let key: [u8; 32] = if data.len() == 32 {
            data.try_into().expect("32 bytes")
        } else {
            let text = std::str::from_utf8(&data).unwrap_or("").trim();
            decode_hex(text).ok_or_else(|| {
                format!(
                    "key file {}: expected 32 raw bytes or 64 hexadecimal characters, found {} bytes",
                    path.display(),
                    data.len()
                )
            })?
        };
        Ok(EncryptionKey::from_bytes(id, &key))
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 255 {
        return Err(format!("key id {id:?}: must be 1 to 255 bytes"));
    }
    Ok(())
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        key[i] = (hi * 16 + lo) as u8;
    }
    Some(key)
}

fn header(key_id: &str, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 1 + key_id.len() + NONCE_LEN);
    out.extend_from_slice(MAGIC);
    out.push(key_id.len() as u8);
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(nonce);
    out
}

/// The encrypted object for `plaintext` of message `message_id`.
pub(crate) fn seal(
    key: &EncryptionKey,
    message_id: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, ArchiveError> {
    check_id(&key.id).map_err(ArchiveError::Invalid)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| ArchiveError::Storage("no random numbers for a nonce".into()))?;
    let mut out = header(&key.id, &nonce);
    let mut aad = out.clone();
    aad.extend_from_slice(message_id.as_bytes());
    let mut body = plaintext.to_vec();
    key.key
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad[..]),
            &mut body,
        )
        .map_err(|_| ArchiveError::Storage("encryption failed".into()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// The plaintext of an encrypted object, with the key of `keys` whose id
/// the object names. `expected_key_id` is the id the index recorded.
pub(crate) fn open(
    keys: &[EncryptionKey],
    expected_key_id: &str,
    message_id: &str,
    object: &[u8],
) -> Result<Vec<u8>, ArchiveError> {
    let corrupt = |why: &str| {
        ArchiveError::Storage(format!(
            "body of message {message_id} is not a valid encrypted object: {why}"
        ))
    };
    let rest = object
        .strip_prefix(MAGIC)
        .ok_or_else(|| corrupt("no header"))?;
    let (&id_len, rest) = rest.split_first().ok_or_else(|| corrupt("truncated"))?;
    let id_len = id_len as usize;
    if rest.len() < id_len + NONCE_LEN {
        return Err(corrupt("truncated"));
    }
    let key_id = std::str::from_utf8(&rest[..id_len]).map_err(|_| corrupt("key id"))?;
    if key_id != expected_key_id {
        return Err(corrupt(&format!(
            "encrypted with key {key_id:?}, the index says {expected_key_id:?}"
        )));
    }
    let nonce: [u8; NONCE_LEN] = rest[id_len..id_len + NONCE_LEN]
        .try_into()
        .expect("nonce length");
    let header_len = MAGIC.len() + 1 + id_len + NONCE_LEN;
    let Some(key) = keys.iter().find(|k| k.id == key_id) else {
        return Err(ArchiveError::Storage(format!(
            "body of message {message_id} is encrypted with key {key_id:?}, which is not configured"
        )));
    };
    let mut aad = object[..header_len].to_vec();
    aad.extend_from_slice(message_id.as_bytes());
    let mut body = object[header_len..].to_vec();
    let plain = key
        .key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad[..]),
            &mut body,
        )
        .map_err(|_| {
            ArchiveError::Storage(format!(
                "body of message {message_id} does not decrypt with key {key_id:?} (wrong key, or the object was altered)"
            ))
        })?;
    let len = plain.len();
    body.truncate(len);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_failures() {
        let k1 = EncryptionKey::from_bytes("k1", &[7; 32]);
        let k1_other = EncryptionKey::from_bytes("k1", &[8; 32]);
        let sealed = seal(&k1, "m1", b"Subject: hi\r\n\r\nbody").unwrap();
        assert!(sealed.starts_with(MAGIC));
        assert!(!sealed.windows(4).any(|w| w == b"body"));
        assert_eq!(
            open(std::slice::from_ref(&k1), "k1", "m1", &sealed).unwrap(),
            b"Subject: hi\r\n\r\nbody"
        );
        // Another message id (associated data) does not decrypt.
        assert!(open(std::slice::from_ref(&k1), "k1", "m2", &sealed).is_err());
        // A wrong key with the right id, and no key at all.
        let err = open(&[k1_other], "k1", "m1", &sealed).unwrap_err();
        assert!(err.message().contains("does not decrypt"), "{err}");
        let err = open(&[], "k1", "m1", &sealed).unwrap_err();
        assert!(err.message().contains("not configured"), "{err}");
        // A flipped ciphertext bit.
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(open(&[k1], "k1", "m1", &bad).is_err());
    }

    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [1u8; 32]).unwrap();
        let hex = dir.path().join("hex");
        std::fs::write(&hex, format!("{}\n", "01".repeat(32))).unwrap();
        let a = EncryptionKey::from_file("a", &raw).unwrap();
        let b = EncryptionKey::from_file("a", &hex).unwrap();
        let sealed = seal(&a, "m", b"x").unwrap();
        assert_eq!(open(&[b], "a", "m", &sealed).unwrap(), b"x");
        let short = dir.path().join("short");
        std::fs::write(&short, "abcd").unwrap();
        assert!(EncryptionKey::from_file("a", &short).is_err());
        assert!(EncryptionKey::from_file("a", &dir.path().join("missing")).is_err());
        assert!(EncryptionKey::from_file("", &raw).is_err());
    }
}
