//! The Mail Manager API from its real clients: the Python suite in
//! `tests/api/` (boto3 over AWS JSON 1.0 and over Smithy RPC v2 CBOR, raw
//! SigV4 requests, the AWS CLI, SMTP with smtplib) against a running
//! `postern serve`.
//!
//! Needs `python3` with boto3 and the AWS CLI v1 (`pip install boto3
//! awscli`); the suite fails, naming what is missing, without them.
//!
//! Two servers: one whose API keys are the ones it generates at first start
//! (`DataDir/state/credentials`, profile `postern`, what a user of the
//! embedded default reads), which runs the whole suite; one with keys
//! declared in the config (`Server.Api.AccessKeys`), which runs the
//! signature and CLI tests with the keys in the environment.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:000000000000:secret:postern-test-login";
const RULES_PER_RULE_SET: usize = 10;
const EXPORT_BUCKET: &str = "postern-exports";
const ACCESS_KEY_ID: &str = "AKIAPOSTERNTEST00001";
const SECRET_ACCESS_KEY: &str = "pOsTeRn/TeSt+SeCrEt/KeY0123456789abcdefg";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The gateway the suite drives: the SMTP resources it finds by name
/// (ingress point `smtp-gateway`, traffic policy `smtp-allow`, rule set
/// `smtp-effect`, archive `smtp-archive`), a secret for SecretArn, and
/// object storage in a directory for archive exports. `api` is inserted
/// under `Server`.
fn config(dir: &Path, smtp: u16, http: u16, api: &str) -> String {
    std::fs::write(
        dir.join("secret.json"),
        "{\"username\": \"relay-user\", \"password\": \"relay-password\"}\n",
    )
    .unwrap();
    format!(
        r#"Server:
  DataDir: {data}
  HttpListen: 127.0.0.1:{http}
  Hostname: gw.postern.test
  Authentication: {{Enabled: false}}
  Quotas: {{RulesPerRuleSet: {RULES_PER_RULE_SET}}}
  ObjectStorage: {{Directory: {objects}}}
  Secrets:
    "{SECRET_ARN}": {{File: secret.json}}
{api}TrafficPolicies:
  - TrafficPolicyName: smtp-allow
    DefaultAction: ALLOW
    PolicyStatements: []
RuleSets:
  - RuleSetName: smtp-effect
    Rules:
      - Name: archive-all
        Actions:
          - Archive: {{TargetArchive: smtp-archive}}
IngressPoints:
  - IngressPointName: smtp-gateway
    Type: OPEN
    TrafficPolicyId: smtp-allow
    RuleSetId: smtp-effect
    Listen: ["127.0.0.1:{smtp}"]
Archives:
  - ArchiveName: smtp-archive
"#,
        data = dir.join("data").display(),
        objects = dir.join("objects").display(),
    )
}

/// `python3 -m unittest ARGS` in `tests/api`, with the environment the
/// suite reads (see `tests/api/support.py`) and `credentials` on top;
/// fails with the suite's output unless every test passed.
fn run_suite(dir: &Path, smtp: u16, http: u16, args: &[&str], credentials: &[(&str, String)]) {
    let root = repo_root();
    let mut command = Command::new("python3");
    command
        .args(["-m", "unittest"])
        .args(args)
        .current_dir(root.join("tests/api"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("POSTERN_ENDPOINT", format!("http://127.0.0.1:{http}"))
        .env("POSTERN_SMTP", format!("127.0.0.1:{smtp}"))
        .env("POSTERN_DATA_DIR", dir.join("data"))
        .env("POSTERN_EXPORT_BUCKET", EXPORT_BUCKET)
        .env(
            "POSTERN_EXPORT_DIR",
            dir.join("objects").join(EXPORT_BUCKET),
        )
        .env("POSTERN_GATEWAY_INGRESS_POINT", "smtp-gateway")
        .env("POSTERN_GATEWAY_ARCHIVE", "smtp-archive")
        .env("POSTERN_RULES_PER_RULE_SET", RULES_PER_RULE_SET.to_string())
        .env("POSTERN_SECRET_ARN", SECRET_ARN)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        // Nothing from the machine's AWS setup.
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        );
    for name in [
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_DATA_PATH",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_MAILMANAGER",
        "AWS_CA_BUNDLE",
    ] {
        command.env_remove(name);
    }
    for (name, value) in credentials {
        command.env(name, value);
    }
    let output = command
        .output()
        .expect("python3 is needed by this test (with boto3 and awscli)");
    assert!(
        output.status.success(),
        "the API suite failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    // unittest reports on standard error; shown with --nocapture.
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn boto3_suite_with_the_generated_credentials() {
    let dir = TempDir::new("api-boto3");
    let ports = free_ports(2);
    let (smtp, http) = (ports[0], ports[1]);
    let _server = Server::start(dir.path(), smtp, &config(dir.path(), smtp, http, ""));

    let credentials = dir.path().join("data/state/credentials");
    let text = wait_for("the generated API credentials", || {
        std::fs::read_to_string(&credentials)
            .ok()
            .filter(|t| t.contains("aws_secret_access_key"))
    });
    assert!(text.contains("[postern]"), "{text}");
    assert!(text.contains("aws_access_key_id"), "{text}");

    run_suite(
        dir.path(),
        smtp,
        http,
        &["discover", "-v", "-s", ".", "-p", "test_*.py"],
        &[
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                credentials.display().to_string(),
            ),
            ("AWS_PROFILE", "postern".into()),
        ],
    );
}

#[test]
fn config_declared_access_keys() {
    let dir = TempDir::new("api-keys");
    let ports = free_ports(2);
    let (smtp, http) = (ports[0], ports[1]);
    std::fs::write(dir.path().join("api-secret.key"), SECRET_ACCESS_KEY).unwrap();
    let api = format!(
        "  Api:\n    AccessKeys:\n      - {{AccessKeyId: {ACCESS_KEY_ID}, SecretAccessKey: {{File: api-secret.key}}}}\n"
    );
    let _server = Server::start(dir.path(), smtp, &config(dir.path(), smtp, http, &api));
    run_suite(
        dir.path(),
        smtp,
        http,
        &["-v", "test_auth", "test_cli"],
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.into()),
        ],
    );
}
