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
