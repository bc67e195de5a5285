//! The lab's ssh credentials for `--transport ssh`: one client key that every host's sshd
//! authorizes, a host key and sshd config per host, and a known-hosts file naming each
//! host's key at its address and port. Keys are made with `ssh-keygen` (openssh-client,
//! which openssh-server brings) and kept across `lab up`s.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::layout::{authorized_keys, known_hosts, ssh_key, HostLayout};
use crate::pki::write_file;
use crate::LabError;

/// Makes the keys that are missing and writes every host's sshd config and the known-hosts
/// file.
pub(crate) fn ensure(lab_dir: &Path, hosts: &[HostLayout]) -> Result<(), LabError> {
    let client_key = ssh_key(lab_dir);
    let dir = client_key.parent().expect("the key is in a directory");
    private_dir(dir, 0o700)?;
    keygen(&client_key)?;
    let public = read_public(&client_key)?;
    write_file(&authorized_keys(lab_dir), &public, false)?;

    let mut known = String::new();
    for host in hosts {
        let ssh = host.ssh_dir();
        private_dir(&ssh, 0o700)?;
        // sshd's privilege-separation directory: root's, writable by nobody else.
        private_dir(&ssh.join("privsep"), 0o755)?;
        let host_key = ssh.join("ssh_host_ed25519_key");
        keygen(&host_key)?;
        let mut words = read_public(&host_key)?.split_whitespace().map(String::from).collect::<Vec<_>>();
        words.truncate(2);
        known.push_str(&format!("[{}]:{} {}\n", host.address, host.port, words.join(" ")));
        write_file(&ssh.join("sshd_config"), &host.sshd_config_text(), false)?;
    }
    write_file(&known_hosts(lab_dir), &known, false)
}

fn private_dir(dir: &Path, mode: u32) -> Result<(), LabError> {
    fs::create_dir_all(dir).map_err(|source| LabError::Io { what: format!("create {}", dir.display()), source })?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(|source| LabError::Io { what: format!("restrict {}", dir.display()), source })
}

/// An ed25519 key without a passphrase at `path` (private, 0600) and `path.pub`, unless
/// both are there.
fn keygen(path: &Path) -> Result<(), LabError> {
    if path.is_file() && path.with_extension("pub").is_file() {
        return Ok(());
    }
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(path.with_extension("pub"));
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ferry lab", "-f"])
        .arg(path)
        .output()
        .map_err(|source| LabError::Spawn {
            what: "ssh-keygen (install openssh-server: scripts/setup)".into(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(LabError::DaemonFailed {
            host: "lab".into(),
            reason: format!("ssh-keygen {}: {}", path.display(), String::from_utf8_lossy(&output.stderr).trim()),
        })
    }
}

fn read_public(key: &Path) -> Result<String, LabError> {
    let path = key.with_extension("pub");
    fs::read_to_string(&path).map_err(|source| LabError::Io { what: format!("read {}", path.display()), source })
}
