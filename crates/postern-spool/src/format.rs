//! The queue file: encoding its header and trailer, and checking a file
//! that claims to be one. Pure: bytes in, a verdict out (the streaming
//! checker takes any `Read`). The format is described in the crate
//! documentation.

use std::fmt;
use std::io::{self, Read};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// First bytes of every queue file.
pub(crate) const MAGIC: [u8; 8] = *b"POSTERNQ";
/// Format version written by this code.
pub(crate) const VERSION: u32 = 1;
/// Last bytes of every complete queue file.
pub(crate) const END_MARKER: [u8; 8] = *b"POSTEND\n";
/// magic, version, created (µs), meta length.
pub(crate) const HEADER_LEN: usize = 8 + 4 + 8 + 4;
/// message length, CRC32, end marker.
pub(crate) const TRAILER_LEN: usize = 8 + 4 + 8;
/// Largest meta a queue file may carry.
pub const MAX_META_LEN: usize = 16 << 20;

/// Why a file is not a valid queue file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FormatError {
    TooShort(u64),
    BadMagic,
    UnsupportedVersion(u32),
    MetaTooLong(u64),
    LengthMismatch { recorded: u64, actual: u64 },
    BadEndMarker,
    BadChecksum { recorded: u32, computed: u32 },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::TooShort(n) => write!(f, "{n} bytes is shorter than a header and trailer"),
            FormatError::BadMagic => write!(f, "not a queue file (bad magic)"),
            FormatError::UnsupportedVersion(v) => write!(f, "unsupported queue file version {v}"),
            FormatError::MetaTooLong(n) => write!(f, "meta length {n} does not fit in the file"),
            FormatError::LengthMismatch { recorded, actual } => write!(
                f,
                "trailer records a {recorded}-byte message but the file holds {actual} bytes (truncated or extended)"
            ),
            FormatError::BadEndMarker => write!(f, "no end marker (incomplete write)"),
            FormatError::BadChecksum { recorded, computed } => write!(
                f,
                "checksum mismatch: recorded {recorded:08x}, computed {computed:08x}"
            ),
        }
    }
}

impl std::error::Error for FormatError {}

impl From<FormatError> for io::Error {
    fn from(e: FormatError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The header and meta of a new queue file.
pub(crate) fn encode_header(created_micros: u64, meta: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&created_micros.to_le_bytes());
    // The caller refuses meta over MAX_META_LEN, which fits in a u32.
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(meta);
}

/// The trailer; `hasher` has seen every byte written before it.
pub(crate) fn encode_trailer(message_len: u64, mut hasher: crc32fast::Hasher) -> [u8; TRAILER_LEN] {
    let len = message_len.to_le_bytes();
    hasher.update(&len);
    let crc = hasher.finalize();
    let mut t = [0u8; TRAILER_LEN];
    t[..8].copy_from_slice(&len);
    t[8..12].copy_from_slice(&crc.to_le_bytes());
    t[12..].copy_from_slice(&END_MARKER);
    t
}

/// What a valid queue file holds, as offsets into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub created: SystemTime,
    pub meta: std::ops::Range<usize>,
    pub message: std::ops::Range<usize>,
}

struct Header {
    created_micros: u64,
    meta_len: u64,
}

fn decode_header(h: &[u8; HEADER_LEN]) -> Result<Header, FormatError> {
    if h[..8] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let version = u32::from_le_bytes(h[8..12].try_into().unwrap_or_default());
    if version != VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    Ok(Header {
        created_micros: u64::from_le_bytes(h[12..20].try_into().unwrap_or_default()),
        meta_len: u64::from(u32::from_le_bytes(h[20..24].try_into().unwrap_or_default())),
    })
}

/// Checks the trailer against the file length; returns the recorded CRC.
fn check_trailer(t: &[u8; TRAILER_LEN], file_len: u64, meta_len: u64) -> Result<u32, FormatError> {
    if t[12..] != END_MARKER {
        return Err(FormatError::BadEndMarker);
    }
    let recorded = u64::from_le_bytes(t[..8].try_into().unwrap_or_default());
    let actual = file_len - (HEADER_LEN + TRAILER_LEN) as u64 - meta_len;
    if recorded != actual {
        return Err(FormatError::LengthMismatch { recorded, actual });
    }
    Ok(u32::from_le_bytes(t[8..12].try_into().unwrap_or_default()))
}

fn created_time(micros: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_micros(micros))
        .unwrap_or(UNIX_EPOCH)
}

fn check_sizes(file_len: u64) -> Result<(), FormatError> {
    if file_len < (HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(FormatError::TooShort(file_len));
    }
    Ok(())
}

fn check_meta(meta_len: u64, file_len: u64) -> Result<(), FormatError> {
    if meta_len > file_len - (HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(FormatError::MetaTooLong(meta_len));
    }
    Ok(())
}

/// Checks a whole queue file held in memory.
pub(crate) fn parse(bytes: &[u8]) -> Result<Layout, FormatError> {
    let file_len = bytes.len() as u64;
    check_sizes(file_len)?;
    let header: &[u8; HEADER_LEN] = bytes[..HEADER_LEN]
        .try_into()
        .map_err(|_| FormatError::TooShort(file_len))?;
    let h = decode_header(header)?;
    check_meta(h.meta_len, file_len)?;
    let trailer_at = bytes.len() - TRAILER_LEN;
    let trailer: &[u8; TRAILER_LEN] = bytes[trailer_at..]
        .try_into()
        .map_err(|_| FormatError::TooShort(file_len))?;
    let recorded = check_trailer(trailer, file_len, h.meta_len)?;
    let computed = crc32fast::hash(&bytes[..trailer_at + 8]);
    if computed != recorded {
        return Err(FormatError::BadChecksum { recorded, computed });
    }
    let meta_end = HEADER_LEN + h.meta_len as usize;
    Ok(Layout {
        created: created_time(h.created_micros),
        meta: HEADER_LEN..meta_end,
        message: meta_end..trailer_at,
    })
}

/// Checks a queue file of `file_len` bytes by streaming it through
/// `reader` (from its start) in 64 KiB pieces, without holding it in
/// memory. An I/O error is returned as the outer error.
pub(crate) fn verify(mut reader: impl Read, file_len: u64) -> io::Result<Result<(), FormatError>> {
    if let Err(e) = check_sizes(file_len) {
        return Ok(Err(e));
    }
    let mut header = [0u8; HEADER_LEN];
    reader.read_exact(&mut header)?;
    let h = match decode_header(&header) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    if let Err(e) = check_meta(h.meta_len, file_len) {
        return Ok(Err(e));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header);
    // Everything up to the CRC: meta, message, and the length in the trailer.
    let mut remaining = file_len - HEADER_LEN as u64 - TRAILER_LEN as u64;
    let mut buf = vec![0u8; 64 * 1024];
    while remaining > 0 {
        let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
        reader.read_exact(&mut buf[..n])?;
        hasher.update(&buf[..n]);
        remaining -= n as u64;
    }
    let mut trailer = [0u8; TRAILER_LEN];
    reader.read_exact(&mut trailer)?;
    hasher.update(&trailer[..8]);
    let recorded = match check_trailer(&trailer, file_len, h.meta_len) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let computed = hasher.finalize();
    if computed != recorded {
        return Ok(Err(FormatError::BadChecksum { recorded, computed }));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testrand::Rng;

    fn file(meta: &[u8], message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_header(1_750_000_000_123_456, meta, &mut out);
        out.extend_from_slice(message);
        let mut h = crc32fast::Hasher::new();
        h.update(&out);
        let t = encode_trailer(message.len() as u64, h);
        out.extend_from_slice(&t);
        out
    }

    fn both(bytes: &[u8]) -> Result<Layout, FormatError> {
        let streamed = verify(bytes, bytes.len() as u64).expect("reading a slice");
        let whole = parse(bytes);
        assert_eq!(streamed.is_ok(), whole.is_ok(), "{streamed:?} vs {whole:?}");
        if let (Err(a), Err(b)) = (&streamed, &whole) {
            assert_eq!(a, b);
        }
        whole
    }

    #[test]
    fn round_trip() {
        let f = file(b"{\"from\":\"a@b\"}", b"Subject: x\r\n\r\nbody\r\n");
        let l = both(&f).unwrap();
        assert_eq!(&f[l.meta], b"{\"from\":\"a@b\"}");
        assert_eq!(&f[l.message], b"Subject: x\r\n\r\nbody\r\n");
        assert_eq!(
            l.created.duration_since(UNIX_EPOCH).unwrap().as_micros(),
            1_750_000_000_123_456
        );
        let empty = file(b"", b"");
        let l = both(&empty).unwrap();
        assert!(l.meta.is_empty() && l.message.is_empty());
    }

    #[test]
    fn every_truncation_and_every_flipped_bit_is_caught() {
        let f = file(b"meta", b"a message of some length\r\n");
        for cut in 0..f.len() {
            assert!(both(&f[..cut]).is_err(), "truncated to {cut}");
        }
        for i in 0..f.len() {
            for bit in 0..8 {
                let mut g = f.clone();
                g[i] ^= 1 << bit;
                assert!(both(&g).is_err(), "bit {bit} of byte {i}");
            }
        }
        let mut longer = f.clone();
        longer.push(0);
        assert!(both(&longer).is_err());
    }

    #[test]
    fn errors_name_the_cause() {
        let f = file(b"m", b"body");
        assert_eq!(both(&f[..10]).unwrap_err(), FormatError::TooShort(10));
        let mut g = f.clone();
        g[0] = b'X';
        assert_eq!(both(&g).unwrap_err(), FormatError::BadMagic);
        let mut g = f.clone();
        g[8] = 2;
        assert_eq!(both(&g).unwrap_err(), FormatError::UnsupportedVersion(2));
        let mut g = f.clone();
        let n = g.len();
        g[n - 1] = 0;
        assert_eq!(both(&g).unwrap_err(), FormatError::BadEndMarker);
        let mut g = f.clone();
        g[HEADER_LEN + 1] ^= 0x20;
        assert!(matches!(
            both(&g).unwrap_err(),
            FormatError::BadChecksum { .. }
        ));
    }

    /// Fuzz-style: random bytes, and valid files with random damage, never
    /// make the checkers panic, and the two checkers agree.
    #[test]
    fn random_input_is_an_error_never_a_panic() {
        let mut rng = Rng::new(0x5EED_0001);
        for _ in 0..20_000 {
            let len = rng.below(200) as usize;
            let mut bytes = rng.bytes(len);
            if rng.below(4) == 0 && bytes.len() >= 12 {
                bytes[..8].copy_from_slice(&MAGIC);
                bytes[8..12].copy_from_slice(&VERSION.to_le_bytes());
            }
            if rng.below(4) == 0 && bytes.len() >= 8 {
                let n = bytes.len();
                bytes[n - 8..].copy_from_slice(&END_MARKER);
            }
            let _ = both(&bytes);
        }
        for _ in 0..5_000 {
            let meta = rng.some_bytes(40);
            let msg = rng.some_bytes(300);
            let mut f = file(&meta, &msg);
            match rng.below(3) {
                0 => {
                    let i = rng.below(f.len() as u64) as usize;
                    f[i] = f[i].wrapping_add(1 + rng.below(255) as u8);
                    assert!(both(&f).is_err());
                }
                1 => {
                    let cut = rng.below(f.len() as u64) as usize;
                    assert!(both(&f[..cut]).is_err());
                }
                _ => {
                    let l = both(&f).unwrap();
                    assert_eq!(&f[l.meta], &meta[..]);
                    assert_eq!(&f[l.message], &msg[..]);
                }
            }
        }
    }
}
