//! What a host's transport needs on this machine, checked before libvirt is asked to
//! connect: libvirt reports a missing TLS client key only as "Unable to read TLS
//! confirmation", naming neither the host nor the file.

use std::path::{Path, PathBuf};

use ferry_driver::ErrorKind;
use ferry_model::{HostSpec, Transport};

use crate::error::Failure;

/// The files a TLS client reads, as libvirt looks for them: under the URI's `pkipath`, or,
/// for root, at the system paths.
fn tls_client_files(uri: &str, root: bool) -> Option<[(&'static str, PathBuf); 3]> {
    if let Some(dir) = query_param(uri, "pkipath") {
        let dir = Path::new(dir);
        return Some([
            ("CA certificate", dir.join("cacert.pem")),
            ("client certificate", dir.join("clientcert.pem")),
            ("client key", dir.join("clientkey.pem")),
        ]);
    }
    // Other users' defaults fall back from ~/.pki to the system's: libvirt's to judge.
    root.then(|| {
        [
            ("CA certificate", PathBuf::from("/etc/pki/CA/cacert.pem")),
            ("client certificate", PathBuf::from("/etc/pki/libvirt/clientcert.pem")),
            ("client key", PathBuf::from("/etc/pki/libvirt/private/clientkey.pem")),
        ]
    })
}

/// Fails, naming the host and the file, when a TLS host's client credentials cannot be
/// read here. Refused, not unreachable: retrying does not make a file appear.
pub(crate) fn check_credentials(host: &HostSpec) -> Result<(), Failure> {
    if host.transport() != Transport::Tls {
        return Ok(());
    }
    // The owner of /proc/self is this process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    let Some(files) = tls_client_files(&host.uri, root) else { return Ok(()) };
    for (what, path) in files {
        if let Err(e) = std::fs::File::open(&path) {
            let reason = format!(
                "{}: cannot read its TLS {what} {}: {e}; put it there or point the uri's pkipath in the cluster file at the directory that holds cacert.pem, clientcert.pem and clientkey.pem",
                host.name,
                path.display()
            );
            return Err(Failure::new(ErrorKind::Refused, reason));
        }
    }
    Ok(())
}

/// The value of `name` in a URI's query (`?a=1&name=VALUE`), as written.
fn query_param<'a>(uri: &'a str, name: &str) -> Option<&'a str> {
    let query = uri.split_once('?')?.1;
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_files_come_from_pkipath_else_from_the_system_for_root() {
        let files = tls_client_files("qemu+tls://h/system?pkipath=/lab/pki&x=1", false).expect("pkipath");
        assert_eq!(files[2].1, PathBuf::from("/lab/pki/clientkey.pem"));
        let files = tls_client_files("qemu+tls://h/system", true).expect("root");
        assert_eq!(files[0].1, PathBuf::from("/etc/pki/CA/cacert.pem"));
        assert!(tls_client_files("qemu+tls://h/system", false).is_none());
    }

    #[test]
    fn a_missing_key_names_host_and_file_and_is_refused() {
        let dir = std::env::temp_dir().join(format!("ferry-tls-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for file in ["cacert.pem", "clientcert.pem"] {
            std::fs::write(dir.join(file), "x").expect("write");
        }
        let host = HostSpec {
            name: "host-b".into(),
            uri: format!("qemu+tls://127.0.0.1:1/system?pkipath={}", dir.display()),
            migration_uri: None,
            group: "g".into(),
            tags: vec![],
            link_mib_s: None,
            cpu_overcommit: 1.0,
            memory_overcommit: 1.0,
            maintenance: false,
            shared_pools: vec![],
            stream: Default::default(),
        };
        let failure = check_credentials(&host).expect_err("no key");
        assert_eq!(failure.kind, ErrorKind::Refused);
        assert!(failure.message.starts_with("host-b: cannot read its TLS client key"), "{}", failure.message);
        assert!(failure.message.contains(&dir.join("clientkey.pem").display().to_string()), "{}", failure.message);
        std::fs::write(dir.join("clientkey.pem"), "x").expect("write");
        assert!(check_credentials(&host).is_ok());
        let tcp = HostSpec { uri: "qemu+tcp://127.0.0.1:1/system".into(), ..host };
        assert!(check_credentials(&tcp).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
