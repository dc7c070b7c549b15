//! A real Dovecot with LMTP only, in a temporary directory, for the tests
//! of LMTP delivery (this crate's, and the gateway's end-to-end tests).
//! Needs Dovecot: `apt-get install dovecot-lmtpd`.

#![allow(dead_code)]

use super::peers;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

pub struct Dovecot {
    _peer: peers::Peer,
    pub addr: SocketAddr,
    pub socket: PathBuf,
    pub mail: PathBuf,
    _dir: tempfile::TempDir,
}

/// Dovecot with LMTP only, two users (alice and carol @example.test),
/// Maildirs under the temporary directory. Mail is written as `nobody`
/// (Dovecot refuses uid 0 for mail), so the directories are opened up.
pub async fn dovecot() -> Dovecot {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["run", "state", "mail", "home"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    for sub in ["mail", "home"] {
        std::fs::set_permissions(root.join(sub), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let users = root.join("users");
    std::fs::write(
        &users,
        "alice@example.test:{PLAIN}x::::::\ncarol@example.test:{PLAIN}x::::::\n",
    )
    .unwrap();
    let port = peers::free_port();
    let r = root.display();
    let u = users.display();
    let conf = format!(
        "base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
protocols = lmtp
ssl = no
listen = 127.0.0.1
default_internal_user = root
default_internal_group = root
default_login_user = root
first_valid_uid = 1
mail_location = maildir:{r}/mail/%u
passdb {{
  driver = passwd-file
  args = {u}
}}
userdb {{
  driver = passwd-file
  args = {u}
  default_fields = uid=nobody gid=nogroup home={r}/home/%u
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
  unix_listener lmtp {{
    mode = 0666
  }}
}}
"
    );
    let conf_path = root.join("dovecot.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let conf_arg = conf_path.display().to_string();
    let mut peer = peers::spawn(
        "/usr/sbin/dovecot",
        &["-F", "-c", &conf_arg],
        "apt-get install dovecot-lmtpd",
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    peers::wait_for_port(&mut peer, addr).await;
    Dovecot {
        _peer: peer,
        addr,
        socket: root.join("run").join("lmtp"),
        mail: root.join("mail"),
        _dir: dir,
    }
}
