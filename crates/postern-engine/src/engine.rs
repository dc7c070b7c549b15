//! The engines of a whole config: every traffic policy and rule set
//! compiled, address lists loaded once and shared, and each ingress point
//! bound to its policy and rule set.

use crate::address_list::AddressList;
use crate::compile::{Catalog, UnknownReference};
use crate::policy::CompiledPolicy;
use crate::rule_set::CompiledRuleSet;
use postern_config::{Identity, ValidatedConfig};
use postern_model::{IngressPointType, ResourceKind};
use std::sync::Arc;

#[derive(Debug)]
pub struct IngressBinding {
    pub identity: Identity,
    pub kind: IngressPointType,
    pub policy: Arc<CompiledPolicy>,
    pub rule_set: Arc<CompiledRuleSet>,
}

#[derive(Debug)]
pub struct Engine {
    pub ingress_points: Vec<IngressBinding>,
    pub policies: Vec<Arc<CompiledPolicy>>,
    pub rule_sets: Vec<Arc<CompiledRuleSet>>,
}

struct ConfigCatalog<'a> {
    config: &'a ValidatedConfig,
    lists: Vec<Arc<AddressList>>,
}

impl Catalog for ConfigCatalog<'_> {
    fn address_list(&self, reference: &str) -> Option<Arc<AddressList>> {
        let i = self
            .config
            .index
            .resolve(ResourceKind::AddressList, reference)?;
        self.lists.get(i).cloned()
    }

    fn analyzer(&self, reference: &str) -> Option<String> {
        self.config
            .resolve(ResourceKind::AddonInstance, reference)
            .map(|i| i.arn.clone())
    }
}

impl Engine {
    pub fn build(config: &ValidatedConfig) -> Result<Engine, UnknownReference> {
        let catalog = ConfigCatalog {
            config,
            lists: config
                .address_list_members
                .iter()
                .map(|members| Arc::new(AddressList::new(members)))
                .collect(),
        };
        let mut policies = Vec::new();
        for (id, p) in config.traffic_policies() {
            policies.push(Arc::new(CompiledPolicy::compile(
                &id.id,
                &id.name,
                &id.arn,
                p.default_action,
                p.max_message_size_bytes,
                &p.policy_statements,
                &catalog,
            )?));
        }
        let mut rule_sets = Vec::new();
        for (id, r) in config.rule_sets() {
            rule_sets.push(Arc::new(CompiledRuleSet::compile(
                &id.id, &id.name, &id.arn, &r.rules, &catalog,
            )?));
        }
        let mut ingress_points = Vec::new();
        for (id, ip) in config.ingress_points() {
            let policy = config
                .index
                .resolve(ResourceKind::TrafficPolicy, &ip.traffic_policy_id)
                .ok_or_else(|| UnknownReference(ip.traffic_policy_id.clone()))?;
            let rule_set = config
                .index
                .resolve(ResourceKind::RuleSet, &ip.rule_set_id)
                .ok_or_else(|| UnknownReference(ip.rule_set_id.clone()))?;
            ingress_points.push(IngressBinding {
                identity: id.clone(),
                kind: ip.type_,
                policy: policies[policy].clone(),
                rule_set: rule_sets[rule_set].clone(),
            });
        }
        Ok(Engine {
            ingress_points,
            policies,
            rule_sets,
        })
    }

    /// The position in `ingress_points` of the one a name, id or ARN refers to.
    pub fn find_ingress_point(&self, reference: &str) -> Option<usize> {
        self.ingress_points.iter().position(|b| {
            b.identity.name == reference
                || b.identity.id == reference
                || b.identity.arn == reference
        })
    }

    /// The ingress point a name, id or ARN refers to.
    pub fn ingress_point(&self, reference: &str) -> Option<&IngressBinding> {
        self.find_ingress_point(reference)
            .map(|i| &self.ingress_points[i])
    }
}
