//! An address list compiled for lookups: a hash set of addresses and one of
//! domains (from `*@domain` members). A lookup is one or two hash probes,
//! whatever the size of the list.

use crate::address::{domain_of, normalize};
use ahash::AHashSet;

#[derive(Debug, Default, Clone)]
pub struct AddressList {
    addresses: AHashSet<Box<str>>,
    domains: AHashSet<Box<str>>,
}

impl AddressList {
    pub fn new<S: AsRef<str>>(members: impl IntoIterator<Item = S>) -> AddressList {
        let mut list = AddressList::default();
        for member in members {
            let member = normalize(member.as_ref());
            match member.strip_prefix("*@") {
                Some(domain) => list.domains.insert(domain.into()),
                None => list.addresses.insert(member.into()),
            };
        }
        list
    }

    pub fn len(&self) -> usize {
        self.addresses.len() + self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a normalized address is a member.
    pub fn contains(&self, address: &str) -> bool {
        self.addresses.contains(address)
            || domain_of(address).is_some_and(|d| self.domains.contains(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_domain_members() {
        let list = AddressList::new([
            "Alice@Example.com",
            "*@partner.example",
            "*@XN--BCHER-KVA.example",
        ]);
        assert!(list.contains("alice@example.com"));
        assert!(!list.contains("bob@example.com"));
        assert!(list.contains("anyone@partner.example"));
        assert!(!list.contains("anyone@sub.partner.example"));
        assert!(list.contains("x@bücher.example"));
        assert!(!list.contains(""));
    }
}
