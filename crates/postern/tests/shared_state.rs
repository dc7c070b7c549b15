//! Two nodes sharing a PostgreSQL state store: a change made through one
//! node's API is in force on the other within its poll, and survives both
//! nodes' restarts.

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

/// A schema of its own in the machine's PostgreSQL database `test`,
/// dropped at the end.
struct Schema(String);

impl Schema {
    fn new() -> Schema {
        let name = format!(
            "postern_nodes_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        psql(&format!("CREATE SCHEMA {name}"));
        Schema(name)
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:5432/test?options[search_path]={}",
            self.0
        )
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
    }
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn node_config(dir: &Path, smtp: u16, http: u16) -> String {
    format!(
        "Server:\n  DataDir: {data}\n  HttpListen: 127.0.0.1:{http}\n  Authentication: {{Enabled: false}}\n  State: {{Postgres: {{File: state.url}}}}\n  Api: {{PollSeconds: 1}}\n\
TrafficPolicies:\n  - TrafficPolicyName: all\n    DefaultAction: ALLOW\n    PolicyStatements: []\n\
RuleSets:\n  - RuleSetName: main\n    Rules:\n      - Name: drop-all\n        Actions: [{{Drop: {{}}}}]\n\
IngressPoints:\n  - IngressPointName: gateway\n    Type: OPEN\n    TrafficPolicyId: all\n    RuleSetId: main\n    Listen: [\"127.0.0.1:{smtp}\"]\n\
Archives:\n  - ArchiveName: kept\n",
        data = dir.join("data").display(),
    )
}

fn start_node(dir: &Path, schema: &Schema, smtp: u16, http: u16) -> Server {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("state.url"), schema.url()).unwrap();
    Server::start(dir, smtp, &node_config(dir, smtp, http))
}

#[test]
fn a_change_through_one_node_runs_on_the_other() {
    let schema = Schema::new();
    let dir = TempDir::new("shared-state");
    let ports = free_ports(4);
    let a = start_node(&dir.path().join("a"), &schema, ports[0], ports[1]);
    let b = start_node(&dir.path().join("b"), &schema, ports[2], ports[3]);

    // Node A's API (its own generated keys) changes the shared rule set.
    with_boto3(
        &a,
        ports[1],
        "rid = [r[\"RuleSetId\"] for r in mm.list_rule_sets()[\"RuleSets\"] if r[\"RuleSetName\"] == \"main\"][0]\n\
         mm.update_rule_set(RuleSetId=rid, Rules=[{\"Name\": \"keep-all\", \"Actions\": [{\"Archive\": {\"TargetArchive\": \"kept\"}}]}])",
    );

    // Node B takes the version from the store.
    wait_for("node B to take the new version", || {
        b.log().contains("new version in force").then_some(())
    });
    let id = b.send(
        "s@sender.test",
        &["x@example.com"],
        "Subject: on b\r\n\r\nbody\r\n",
    );
    assert_eq!(matched_rules(&b, &id), vec!["keep-all".to_string()]);

    // Both restarted on their unchanged files: the change stays.
    drop(a);
    drop(b);
    let b = Server::run(&dir.path().join("b"), ports[2]);
    let id = b.send(
        "s@sender.test",
        &["x@example.com"],
        "Subject: after restart\r\n\r\nbody\r\n",
    );
    assert_eq!(matched_rules(&b, &id), vec!["keep-all".to_string()]);
}
