//! The model's `Timestamp`: seconds since the Unix epoch, as AWS's JSON
//! protocol writes it. Reading also accepts RFC 3339 text, which is what
//! `aws mailmanager get-rule-set` prints, so its output loads unchanged.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Timestamp(pub f64);

impl Timestamp {
    /// Parses epoch seconds or RFC 3339 text.
    pub fn parse(text: &str) -> Option<Timestamp> {
        if let Ok(seconds) = text.trim().parse::<f64>() {
            return seconds.is_finite().then_some(Timestamp(seconds));
        }
        let at = OffsetDateTime::parse(text.trim(), &Rfc3339).ok()?;
        Some(Timestamp(at.unix_timestamp_nanos() as f64 / 1e9))
    }

    pub fn from_unix_seconds(seconds: i64) -> Timestamp {
        Timestamp(seconds as f64)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 && self.0.abs() < 1e15 {
            serializer.serialize_i64(self.0 as i64)
        } else {
            serializer.serialize_f64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("epoch seconds or an RFC 3339 timestamp")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                Ok(Timestamp(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).ok_or_else(|| E::custom(format!("not a timestamp: {v:?}")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_epoch_and_rfc3339() {
        assert_eq!(Timestamp::parse("1700000000"), Some(Timestamp(1.7e9)));
        assert_eq!(
            Timestamp::parse("2024-05-01T10:00:00.5+00:00"),
            Some(Timestamp(1714557600.5))
        );
        assert_eq!(Timestamp::parse("yesterday"), None);
    }
}
