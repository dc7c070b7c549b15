//! The archive from a terminal, beside a running gateway: `postern archive
//! search` with filters, `get` (GetArchiveMessage's response, its download
//! link served by the HTTP port), `get --raw` and `--content`, and
//! `export` to a directory; what comes out is byte for byte what was
//! archived.

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::process::Command;
use support::*;

fn archive(dir: &std::path::Path, args: &[&str]) -> (bool, String, Vec<u8>) {
    let output = Command::new(env!("CARGO_BIN_EXE_postern"))
        .arg("archive")
        .arg("-c")
        .arg(dir.join("postern.yaml"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.stdout,
    )
}

fn http_get(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response[head_end + 4..].to_vec())
}

#[test]
fn search_get_download_and_export() {
    let dir = TempDir::new("archive-cli");
    let ports = free_ports(2);
    let config = format!(
        "Server:\n  DataDir: {data}\n  HttpListen: 127.0.0.1:{http}\n  Hostname: gw.postern.test\n  Authentication: {{Enabled: false}}\n\
TrafficPolicies:\n  - TrafficPolicyName: all\n    DefaultAction: ALLOW\n    PolicyStatements: []\n\
RuleSets:\n  - RuleSetName: main\n    Rules:\n      - Name: keep\n        Actions:\n          - Archive: {{TargetArchive: compliance}}\n\
IngressPoints:\n  - IngressPointName: gateway\n    Type: OPEN\n    TrafficPolicyId: all\n    RuleSetId: main\n    Listen: [\"127.0.0.1:{smtp}\"]\n\
Archives:\n  - ArchiveName: compliance\n    Retention: {{RetentionPeriod: SEVEN_YEARS}}\n",
        data = dir.path().join("data").display(),
        http = ports[1],
        smtp = ports[0],
    );
    let gw = Server::start(dir.path(), ports[0], &config);
    let invoice = gw.send(
        "billing@supplier.test",
        &["ap@corp.test"],
        "From: Billing <billing@supplier.test>\r\nTo: ap@corp.test\r\nSubject: Invoice 42\r\n\r\nPlease pay the wire transfer today.\r\n",
    );
    let newsletter = gw.send(
        "news@letters.test",
        &["all@corp.test"],
        "From: news@letters.test\r\nTo: all@corp.test\r\nSubject: Weekly news\r\n\r\nNothing to pay.\r\n",
    );
    for id in [&invoice, &newsletter] {
        wait_for(&format!("{id} indexed"), || gw.archive_get(id));
    }

    // Filters: subject, envelope sender, unless, full text.
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["search", "compliance", "--json"];
        all.extend_from_slice(args);
        let (ok, err, out) = archive(dir.path(), &all);
        assert!(ok, "{err}");
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["ArchivedMessageId"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(
        ids(&[]),
        vec![newsletter.clone(), invoice.clone()],
        "newest first"
    );
    assert_eq!(
        ids(&["--include", "subject=INVOICE"]),
        vec![invoice.clone()]
    );
    assert_eq!(
        ids(&["--include", "envelope_from=@letters.test"]),
        vec![newsletter.clone()]
    );
    assert_eq!(
        ids(&["--unless", "from=billing,nobody"]),
        vec![newsletter.clone()]
    );
    assert_eq!(ids(&["--text", "wire transfer"]), vec![invoice.clone()]);
    assert!(
        ids(&["--include", "subject=%"]).is_empty(),
        "% is not a wildcard"
    );
    assert!(ids(&["--from", "2000-01-01", "--to", "2000-01-02"]).is_empty());
    let (ok, err, _) = archive(
        dir.path(),
        &["search", "compliance", "--include", "colour=red"],
    );
    assert!(!ok && err.contains("the attribute is one of"), "{err}");

    // get: GetArchiveMessage's response; the link downloads the bytes.
    let (ok, err, out) = archive(dir.path(), &["get", &invoice]);
    assert!(ok, "{err}");
    let message: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(message["Envelope"]["From"], "billing@supplier.test");
    assert_eq!(message["Envelope"]["To"][0], "ap@corp.test");
    assert_eq!(message["Metadata"]["SenderIpAddress"], "127.0.0.1");
    let (ok, _, raw) = archive(dir.path(), &["get", &invoice, "--raw"]);
    assert!(ok);
    assert!(contains(&raw, "Subject: Invoice 42\r\n"));
    let link = message["MessageDownloadLink"].as_str().unwrap();
    let (status, body) = http_get(link);
    assert_eq!(status, 200);
    assert_eq!(body, raw, "the link serves the archived bytes");
    let (status, _) = http_get(&link.replace(&invoice, &newsletter));
    assert_eq!(status, 403, "a link is for one message");
    let (ok, _, content) = archive(dir.path(), &["get", &invoice, "--content"]);
    assert!(ok);
    let content: Value = serde_json::from_slice(&content).unwrap();
    assert!(
        content["Text"].as_str().unwrap().contains("wire transfer"),
        "{content}"
    );

    // export: the same bytes, with metadata.
    let out_dir = dir.path().join("export");
    let (ok, err, _) = archive(
        dir.path(),
        &[
            "export",
            "compliance",
            "--dir",
            out_dir.to_str().unwrap(),
            "--metadata",
        ],
    );
    assert!(ok, "{err}");
    assert!(err.contains("exported 2 message(s)"), "{err}");
    assert_eq!(
        std::fs::read(out_dir.join(format!("{invoice}.eml"))).unwrap(),
        raw
    );
    let row: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join(format!("{invoice}.json"))).unwrap())
            .unwrap();
    assert_eq!(row["Subject"], "Invoice 42");
}

/// An archive removed from the config is PENDING_DELETION, then (grace
/// period 0 here) its messages are deleted.
#[test]
fn an_archive_removed_from_the_config_is_deleted_after_its_grace_period() {
    let dir = TempDir::new("archive-delete");
    let ports = free_ports(2);
    let config = |with_old: bool| {
        let (rules, archives) = if with_old {
            (
                "          - Archive: {TargetArchive: old}\n",
                "  - ArchiveName: old\n",
            )
        } else {
            ("", "")
        };
        format!(
            "Server:\n  DataDir: {data}\n  HttpListen: 127.0.0.1:{http}\n  Authentication: {{Enabled: false}}\n  Archive: {{RetentionCheckSeconds: 1, DeletionGraceDays: 0}}\n\
TrafficPolicies:\n  - TrafficPolicyName: all\n    DefaultAction: ALLOW\n    PolicyStatements: []\n\
RuleSets:\n  - RuleSetName: main\n    Rules:\n      - Name: keep\n        Actions:\n          - Archive: {{TargetArchive: kept}}\n{rules}\
IngressPoints:\n  - IngressPointName: gateway\n    Type: OPEN\n    TrafficPolicyId: all\n    RuleSetId: main\n    Listen: [\"127.0.0.1:{smtp}\"]\n\
Archives:\n  - ArchiveName: kept\n{archives}",
            data = dir.path().join("data").display(),
            http = ports[1],
            smtp = ports[0],
        )
    };
    let gw = Server::start(dir.path(), ports[0], &config(true));
    let id = gw.send("a@x.test", &["b@y.test"], "Subject: twice\r\n\r\nbody\r\n");
    // Two copies: the first under the queue id, the other named by the action.
    let second = format!("{id}-0-1");
    for i in [&id, &second] {
        wait_for(&format!("{i} indexed"), || gw.archive_get(i));
    }
    let files = || {
        gw.archived()
            .into_iter()
            .filter(|(stem, _)| stem == &id || stem == &second)
            .count()
    };
    assert_eq!(files(), 2);

    std::fs::write(dir.path().join("postern.yaml"), config(false)).unwrap();
    let pid = gw.child.id();
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    wait_for("the removed archive's message deleted", || {
        (files() == 1).then_some(())
    });
    assert!(
        gw.archive_get(&id).is_some(),
        "the archive still in the config keeps its copy"
    );
    assert!(gw.archive_get(&second).is_none());
    let states: Value =
        serde_json::from_slice(&std::fs::read(gw.data.join("state/archives.json")).unwrap())
            .unwrap();
    assert_eq!(states["Archives"].as_object().unwrap().len(), 1, "{states}");
}
