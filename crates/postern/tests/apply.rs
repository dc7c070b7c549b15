//! The config file and the state store together: `postern apply -f` shows
//! the difference, checks, stores a version that the running server takes
//! without a restart; an unchanged file leaves changes made since (through
//! the API) in force across a restart, a changed file becomes a new version.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use support::*;

fn config(dir: &Path, smtp: u16, http: u16, rule: &str) -> String {
    format!(
        "Server:\n  DataDir: {data}\n  HttpListen: 127.0.0.1:{http}\n  Authentication: {{Enabled: false}}\n  Api: {{PollSeconds: 1}}\n\
TrafficPolicies:\n  - TrafficPolicyName: all\n    DefaultAction: ALLOW\n    PolicyStatements: []\n\
RuleSets:\n  - RuleSetName: main\n    Rules:\n{rule}\
IngressPoints:\n  - IngressPointName: gateway\n    Type: OPEN\n    TrafficPolicyId: all\n    RuleSetId: main\n    Listen: [\"127.0.0.1:{smtp}\"]\n\
Archives:\n  - ArchiveName: kept\n",
        data = dir.join("data").display(),
    )
}

const DROP: &str = "      - Name: drop-all\n        Actions: [{Drop: {}}]\n";
const ARCHIVE: &str =
    "      - Name: keep-all\n        Actions: [{Archive: {TargetArchive: kept}}]\n";

fn apply(file: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postern"))
        .arg("apply")
        .arg("-f")
        .arg(file)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// Whether a unified diff has a line that `sign` starts (a removed or
/// added line) containing `text`.
fn diff_line(diff: &str, sign: char, text: &str) -> bool {
    diff.lines().any(|l| {
        l.starts_with(sign) && !l.starts_with("---") && !l.starts_with("+++") && l.contains(text)
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn apply_shows_checks_and_stores_a_version_the_running_server_takes() {
    let dir = TempDir::new("apply");
    let ports = free_ports(2);
    let server = Server::start(
        dir.path(),
        ports[0],
        &config(dir.path(), ports[0], ports[1], DROP),
    );
    let first = server.send(
        "a@sender.test",
        &["x@example.com"],
        "Subject: one\r\n\r\nbody\r\n",
    );
    server.wait_trace("Message", "QueueId", &first);
    assert!(server.archived().is_empty(), "dropped under version 1");

    let candidate = dir.path().join("candidate.yaml");
    std::fs::write(&candidate, config(dir.path(), ports[0], ports[1], ARCHIVE)).unwrap();

    // A dry run shows the difference and stores nothing.
    let out = apply(&candidate, &["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(diff_line(&shown, '-', "drop-all"), "{shown}");
    assert!(diff_line(&shown, '+', "keep-all"), "{shown}");
    assert!(shown.contains("nothing stored"), "{shown}");

    // Without a terminal, a store needs --yes.
    let out = apply(&candidate, &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--yes"), "{}", text(&out.stderr));

    // A file the gateway could not run is refused, naming the field.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        config(dir.path(), ports[0], ports[1], ARCHIVE)
            .replace("TargetArchive: kept", "TargetArchive: nowhere"),
    )
    .unwrap();
    let out = apply(&broken, &["--yes"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Actions[0].Archive.TargetArchive"),
        "{}",
        text(&out.stderr)
    );

    let out = apply(&candidate, &["--yes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("version 2 stored"),
        "{}",
        text(&out.stdout)
    );
    wait_for("the server to take version 2", || {
        server.log().contains("new version in force").then_some(())
    });
    let second = server.send(
        "a@sender.test",
        &["x@example.com"],
        "Subject: two\r\n\r\nbody\r\n",
    );
    assert_eq!(
        matched_rules(&server, &second),
        vec!["keep-all".to_string()]
    );
    wait_for("the message archived", || {
        server
            .archived()
            .iter()
            .any(|(_, b)| contains(b, "Subject: two"))
            .then_some(())
    });

    // The same file again: nothing to store.
    let out = apply(&candidate, &["--yes"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("no change; version 2 stays"),
        "{}",
        text(&out.stdout)
    );

    // Restarted on its own file, which did not change: what was applied
    // stays in force.
    let mut server = server;
    server.kill();
    let server = Server::run(dir.path(), ports[0]);
    let third = server.send(
        "a@sender.test",
        &["x@example.com"],
        "Subject: three\r\n\r\nbody\r\n",
    );
    assert_eq!(matched_rules(&server, &third), vec!["keep-all".to_string()]);

    // Removing the listening ingress point needs the servers stopped.
    let without = dir.path().join("without.yaml");
    std::fs::write(
        &without,
        config(dir.path(), ports[0], ports[1], ARCHIVE)
            .replace("IngressPointName: gateway", "IngressPointName: renamed"),
    )
    .unwrap();
    let out = apply(&without, &["--yes"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--servers-stopped"),
        "{}",
        text(&out.stderr)
    );
}

/// Replaces the rules of rule set `main` through the API with boto3.
fn update_rules_with_boto3(server: &Server, http: u16, rules_json: &str) {
    with_boto3(
        server,
        http,
        &format!(
            "rid = [r[\"RuleSetId\"] for r in mm.list_rule_sets()[\"RuleSets\"] if r[\"RuleSetName\"] == \"main\"][0]\n\
             mm.update_rule_set(RuleSetId=rid, Rules=json.loads('{rules_json}'))"
        ),
    );
}

#[test]
fn an_unchanged_file_keeps_api_changes_and_a_changed_one_replaces_them() {
    let dir = TempDir::new("precedence");
    let ports = free_ports(2);
    let file = config(dir.path(), ports[0], ports[1], DROP);
    let mut server = Server::start(dir.path(), ports[0], &file);
    update_rules_with_boto3(
        &server,
        ports[1],
        r#"[{"Name": "keep-all", "Actions": [{"Archive": {"TargetArchive": "kept"}}]}]"#,
    );
    let id = server.send(
        "a@sender.test",
        &["x@example.com"],
        "Subject: api\r\n\r\nbody\r\n",
    );
    assert_eq!(matched_rules(&server, &id), vec!["keep-all".to_string()]);
    server.kill();

    // Restarted on the same file: the change made through the API stays.
    let mut server = Server::run(dir.path(), ports[0]);
    let id = server.send(
        "a@sender.test",
        &["x@example.com"],
        "Subject: restart\r\n\r\nbody\r\n",
    );
    assert_eq!(matched_rules(&server, &id), vec!["keep-all".to_string()]);
    server.kill();

    // A changed file is a change: its resources become the next version.
    std::fs::write(
        dir.path().join("postern.yaml"),
        file.replace("drop-all", "drop-everything"),
    )
    .unwrap();
    let server = Server::run(dir.path(), ports[0]);
    let id = server.send(
        "a@sender.test",
        &["x@example.com"],
        "Subject: file\r\n\r\nbody\r\n",
    );
    assert_eq!(
        matched_rules(&server, &id),
        vec!["drop-everything".to_string()]
    );
    let out = apply(&dir.path().join("postern.yaml"), &["--dry-run"]);
    assert!(
        text(&out.stdout).contains("no change; version 3 stays"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn an_api_change_racing_a_stored_version_is_made_on_top_of_it() {
    let dir = TempDir::new("race");
    let ports = free_ports(2);
    // The server does not poll: only the conflict tells it of version 2.
    let slow = |rule: &str| {
        config(dir.path(), ports[0], ports[1], rule).replace("PollSeconds: 1", "PollSeconds: 86400")
    };
    let server = Server::start(dir.path(), ports[0], &slow(DROP));
    let candidate = dir.path().join("candidate.yaml");
    std::fs::write(&candidate, slow(ARCHIVE)).unwrap();
    assert!(apply(&candidate, &["--yes"]).status.success());

    let listed = with_boto3(
        &server,
        ports[1],
        "mm.create_rule_set(RuleSetName=\"extra\", Rules=[{\"Name\": \"x\", \"Actions\": [{\"Drop\": {}}]}])\n\
         print(sorted(r[\"RuleSetName\"] for r in mm.list_rule_sets()[\"RuleSets\"]))",
    );
    assert_eq!(listed.trim(), "['extra', 'main']");
    // Version 2's rules are in force, and version 3 holds both changes.
    let id = server.send(
        "a@sender.test",
        &["x@example.com"],
        "Subject: race\r\n\r\nbody\r\n",
    );
    assert_eq!(matched_rules(&server, &id), vec!["keep-all".to_string()]);
    let out = apply(&candidate, &["--dry-run"]);
    let shown = text(&out.stdout);
    assert!(shown.contains("version 3"), "{shown}");
    assert!(diff_line(&shown, '-', "extra"), "{shown}");
}

/// `config` with a rule `listed` (dropping mail to a member of address list
/// `vip`) before `rule`, and `vip` declaring `members`.
fn config_with_list(dir: &Path, smtp: u16, http: u16, members: &str) -> String {
    let listed = "      - Name: listed\n        Conditions:\n          - BooleanExpression:\n              Evaluate: {IsInAddressList: {Attribute: RECIPIENT, AddressLists: [vip]}}\n              Operator: IS_TRUE\n        Actions: [{Drop: {}}]\n";
    config(dir, smtp, http, &format!("{listed}{ARCHIVE}"))
        + &format!("AddressLists:\n  - AddressListName: vip\n    Members: [{members}]\n")
}

/// Whether mail to `recipient` matches rule `listed` under the version in
/// force.
fn listed(server: &Server, recipient: &str) -> bool {
    let id = server.send(
        "a@sender.test",
        &[recipient],
        "Subject: listed?\r\n\r\nbody\r\n",
    );
    matched_rules(server, &id).contains(&"listed".to_string())
}

#[test]
fn address_list_members_are_shown_counted_and_taken() {
    let dir = TempDir::new("members");
    let ports = free_ports(2);
    let file = config_with_list(
        dir.path(),
        ports[0],
        ports[1],
        "A@example.com, b@example.com",
    );
    let mut server = Server::start(dir.path(), ports[0], &file);
    assert!(listed(&server, "a@example.com"));
    assert!(!listed(&server, "c@example.com"));

    // The difference counts members per list; it does not list them.
    let candidate = dir.path().join("candidate.yaml");
    std::fs::write(
        &candidate,
        config_with_list(
            dir.path(),
            ports[0],
            ports[1],
            "b@example.com, c@example.com, \"*@partner.test\"",
        ),
    )
    .unwrap();
    let out = apply(&candidate, &["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("AddressLists[vip]: 2 members added, 1 removed"),
        "{shown}"
    );
    assert!(
        !shown.contains("c@example.com") && !shown.contains("partner.test"),
        "{shown}"
    );
    assert!(
        !listed(&server, "c@example.com"),
        "a dry run stores nothing"
    );

    let out = apply(&candidate, &["--yes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("version 2 stored"),
        "{}",
        text(&out.stdout)
    );
    wait_for("the server to take version 2", || {
        server.log().contains("new version in force").then_some(())
    });
    assert!(listed(&server, "c@example.com"));
    assert!(listed(&server, "anyone@partner.test"));
    assert!(!listed(&server, "a@example.com"));
    let out = apply(&candidate, &["--dry-run"]);
    assert!(
        text(&out.stdout).contains("no change; version 2 stays"),
        "{}",
        text(&out.stdout)
    );

    // Restarted on its unchanged file: the applied members stay.
    server.kill();
    let mut server = Server::run(dir.path(), ports[0]);
    assert!(listed(&server, "c@example.com"));
    assert!(!listed(&server, "a@example.com"));

    // A file whose members changed replaces them at the next start.
    server.kill();
    std::fs::write(
        dir.path().join("postern.yaml"),
        config_with_list(dir.path(), ports[0], ports[1], "d@example.com"),
    )
    .unwrap();
    let server = Server::run(dir.path(), ports[0]);
    assert!(listed(&server, "d@example.com"));
    assert!(!listed(&server, "c@example.com"));
    let out = apply(&dir.path().join("postern.yaml"), &["--dry-run"]);
    assert!(
        text(&out.stdout).contains("no change; version 3 stays"),
        "{}",
        text(&out.stdout)
    );
}
