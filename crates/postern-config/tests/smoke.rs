use postern_config::parse_config;

#[test]
fn design_md_example_loads() {
    let text = r#"
Server:
  DataDir: ./data
TrafficPolicies:
  - TrafficPolicyName: inbound
    DefaultAction: DENY
    MaxMessageSizeBytes: 26214400
    PolicyStatements:
      - Action: ALLOW
        Conditions:
          - StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: ENDS_WITH, Values: ["@mail.example.com"]}
RuleSets:
  - RuleSetName: main
    Rules:
      - Name: archive-opmt
        Conditions:
          - StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: EQUALS, Values: [opmt@mail.example.com]}
        Actions:
          - Archive: {TargetArchive: compliance}
IngressPoints:
  - IngressPointName: mx-main
    Type: OPEN
    TrafficPolicyId: inbound
    RuleSetId: main
    Listen: ["0.0.0.0:25"]
Archives:
  - ArchiveName: compliance
"#;
    let config =
        parse_config("postern.yaml", text, &|_| Err("no".into())).unwrap_or_else(|e| panic!("{e}"));
    println!("{}", config.summary());
    assert_eq!(config.rule_sets().count(), 1);
}

#[test]
fn errors_all_at_once() {
    let text = r#"
RuleSets:
  - RuleSetName: main
    Rules:
      - Name: archive opmt
        Conditions:
          - StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operator: EQUAL, Values: [opmt@mail.example.com]}
          - StringExpression: {Evaluate: {Attribute: RECIPIENT}, Operatr: EQUALS, Values: []}
        Actions:
          - Archive: {TargetArchive: compliance}
            Drop: {}
IngressPoints:
  - IngressPointName: mx-main
    Type: AUTH
    TrafficPolicyId: inbound
    RuleSetId: main
"#;
    let err = parse_config("postern.yaml", text, &|_| Err("no".into())).unwrap_err();
    println!("{err}");
    assert!(err.len() >= 6);
}

#[test]
fn references_are_kept_resolved_by_name_id_or_arn() {
    use postern_config::Reference;
    use postern_model::ResourceKind as K;
    let text = r#"
TrafficPolicies:
  - TrafficPolicyName: inbound
    DefaultAction: ALLOW
    PolicyStatements: []
RuleSets:
  - RuleSetName: main
    Rules:
      - Name: a
        Actions: [{Archive: {TargetArchive: compliance}}]
      - Name: b
        Actions: [{Archive: {TargetArchive: "arn:aws:ses:us-east-1:000000000000:mailmanager-archive/a-kept"}}]
IngressPoints:
  - IngressPointName: mx-main
    Type: OPEN
    TrafficPolicyId: inbound
    RuleSetId: main
Archives:
  - ArchiveName: other
  - ArchiveName: compliance
  - ArchiveName: kept
    ArchiveId: a-kept
"#;
    let config = parse_config("refs.yaml", text, &|_| Err("no files".into())).unwrap();
    let to = |kind, at| -> Vec<&Reference> {
        config
            .references
            .iter()
            .filter(|r| r.to == (kind, at))
            .collect()
    };
    assert!(to(K::Archive, 0).is_empty());
    let compliance = to(K::Archive, 1);
    assert_eq!(compliance.len(), 1);
    assert_eq!(compliance[0].from, (K::RuleSet, 0));
    assert_eq!(
        compliance[0].path,
        "RuleSets[0].Rules[0].Actions[0].Archive.TargetArchive"
    );
    assert_eq!(
        to(K::Archive, 2)[0].path,
        "RuleSets[0].Rules[1].Actions[0].Archive.TargetArchive"
    );
    assert_eq!(to(K::RuleSet, 0)[0].from, (K::IngressPoint, 0));
    assert_eq!(
        to(K::TrafficPolicy, 0)[0].path,
        "IngressPoints[0].TrafficPolicyId"
    );
}
