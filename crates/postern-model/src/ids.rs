//! Resource kinds, their ids and ARNs in AWS's formats.
//!
//! An id looks like AWS's (`rs-` and 26 lowercase letters and digits for a
//! rule set); an ARN is `arn:aws:ses:{region}:{account}:{type}/{id}`. Ids of
//! resources declared in the config file without an explicit id are derived
//! from the kind and the name, so they stay the same across restarts and
//! machines.

use sha2::{Digest, Sha256};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    TrafficPolicy,
    RuleSet,
    IngressPoint,
    AddressList,
    Archive,
    Relay,
    AddonSubscription,
    AddonInstance,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 8] = [
        Self::TrafficPolicy,
        Self::RuleSet,
        Self::IngressPoint,
        Self::AddressList,
        Self::Archive,
        Self::Relay,
        Self::AddonSubscription,
        Self::AddonInstance,
    ];

    pub fn id_prefix(self) -> &'static str {
        match self {
            Self::TrafficPolicy => "tp-",
            Self::RuleSet => "rs-",
            Self::IngressPoint => "inp-",
            Self::AddressList => "al-",
            Self::Archive => "a-",
            Self::Relay => "rl-",
            Self::AddonSubscription => "as-",
            Self::AddonInstance => "ai-",
        }
    }

    /// The resource type in the ARN.
    pub fn arn_type(self) -> &'static str {
        match self {
            Self::TrafficPolicy => "mailmanager-traffic-policy",
            Self::RuleSet => "mailmanager-rule-set",
            Self::IngressPoint => "mailmanager-ingress-point",
            Self::AddressList => "mailmanager-address-list",
            Self::Archive => "mailmanager-archive",
            Self::Relay => "mailmanager-smtp-relay",
            Self::AddonSubscription => "addon-subscription",
            Self::AddonInstance => "addon-instance",
        }
    }

    /// How people call it, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Self::TrafficPolicy => "traffic policy",
            Self::RuleSet => "rule set",
            Self::IngressPoint => "ingress point",
            Self::AddressList => "address list",
            Self::Archive => "archive",
            Self::Relay => "relay",
            Self::AddonSubscription => "add-on subscription",
            Self::AddonInstance => "add-on instance",
        }
    }

    /// The id a resource of this kind gets from its name: the prefix and 26
    /// characters of a hash, the length of AWS's ids.
    pub fn derive_id(self, name: &str) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let digest = Sha256::new()
            .chain_update(self.arn_type())
            .chain_update([0])
            .chain_update(name)
            .finalize();
        let mut id = String::with_capacity(30);
        id.push_str(self.id_prefix());
        for byte in digest.iter().take(26) {
            id.push(ALPHABET[*byte as usize % ALPHABET.len()] as char);
        }
        id
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partition {
    #[default]
    Aws,
}

/// An ARN of a Mail Manager resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Arn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub kind: ResourceKind,
    pub id: String,
}

impl Arn {
    pub fn new(region: &str, account: &str, kind: ResourceKind, id: &str) -> Arn {
        Arn {
            partition: "aws".into(),
            region: region.into(),
            account: account.into(),
            kind,
            id: id.into(),
        }
    }

    /// Parses `arn:{partition}:ses:{region}:{account}:{type}/{id}`.
    pub fn parse(text: &str) -> Option<Arn> {
        let mut parts = text.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        let partition = parts.next()?;
        if parts.next()? != "ses" {
            return None;
        }
        let region = parts.next()?;
        let account = parts.next()?;
        let (ty, id) = parts.next()?.split_once('/')?;
        let kind = ResourceKind::ALL.into_iter().find(|k| k.arn_type() == ty)?;
        if id.is_empty() || partition.is_empty() {
            return None;
        }
        Some(Arn {
            partition: partition.into(),
            region: region.into(),
            account: account.into(),
            kind,
            id: id.into(),
        })
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:ses:{}:{}:{}/{}",
            self.partition,
            self.region,
            self.account,
            self.kind.arn_type(),
            self.id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_have_aws_shape_and_are_stable() {
        let id = ResourceKind::RuleSet.derive_id("main");
        assert!(id.starts_with("rs-") && id.len() == 29, "{id}");
        assert_eq!(id, ResourceKind::RuleSet.derive_id("main"));
        assert_ne!(id, ResourceKind::RuleSet.derive_id("main2"));
        assert_ne!(
            ResourceKind::Archive.derive_id("x")[2..],
            ResourceKind::Relay.derive_id("x")[3..]
        );
    }

    #[test]
    fn arn_round_trip() {
        let arn = Arn::new(
            "eu-west-1",
            "123456789012",
            ResourceKind::AddonInstance,
            "ai-x1",
        );
        let text = arn.to_string();
        assert_eq!(
            text,
            "arn:aws:ses:eu-west-1:123456789012:addon-instance/ai-x1"
        );
        assert_eq!(Arn::parse(&text), Some(arn));
        assert_eq!(Arn::parse("arn:aws:sns:eu-west-1:123456789012:topic"), None);
        assert_eq!(Arn::parse("arn:aws:ses:eu-west-1:1:unknown/x"), None);
    }
}
