//! The lab's own certificate authority for `--transport tls`: a CA, per host a server
//! certificate (libvirtd's listener and QEMU's incoming migrations) and a client certificate
//! (QEMU's outgoing migrations), and one client certificate for ferry, virsh and every
//! libvirtd's peer-to-peer connection, all under `DIR/pki`, keys root-only (0600).
//!
//! File names are the ones libvirt and QEMU look for: a `?pkipath=DIR` URI reads
//! `cacert.pem`, `clientcert.pem` and `clientkey.pem` there; `migrate_tls_x509_cert_dir`
//! holds `ca-cert.pem`, `server-cert.pem`, `server-key.pem`, `client-cert.pem` and
//! `client-key.pem`.

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::LabError;

/// Where the lab's CA keeps its certificate and key.
pub fn ca_dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("pki").join("ca")
}

/// The client credentials ferry (and virsh, and each libvirtd's peer-to-peer connection)
/// use: the `pkipath` of every host URI.
pub fn client_dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("pki").join("client")
}

/// A host's libvirtd credentials: `cacert.pem`, `servercert.pem`, `serverkey.pem`.
pub fn host_dir(lab_dir: &Path, host: &str) -> PathBuf {
    lab_dir.join("pki").join(host)
}

/// A host's QEMU migration credentials (`migrate_tls_x509_cert_dir`).
pub fn migration_dir(lab_dir: &Path, host: &str) -> PathBuf {
    host_dir(lab_dir, host).join("qemu")
}

/// One host to issue certificates for: its name and the address its URI and migration URI
/// name (the certificate must match it: libvirt and QEMU check the peer's name).
#[derive(Debug, Clone)]
pub struct PkiHost {
    /// `host-a`, ...
    pub name: String,
    /// Where it listens.
    pub address: Ipv4Addr,
}

/// Makes sure every certificate and key the lab needs exists: the CA once, then whatever
/// host or client set is missing (a set is written whole or not at all). A lab brought up
/// again keeps its credentials, so running guests and cluster files stay valid.
pub fn ensure(lab_dir: &Path, hosts: &[PkiHost]) -> Result<(), LabError> {
    let ca_dir = ca_dir(lab_dir);
    let (ca_cert, ca_key) = (ca_dir.join("cacert.pem"), ca_dir.join("cakey.pem"));
    let issuer = if ca_cert.exists() && ca_key.exists() {
        let pem = fs::read_to_string(&ca_key).map_err(io_err("read the lab CA key"))?;
        let key = KeyPair::from_pem(&pem).map_err(pki_err("read the lab CA key"))?;
        Issuer::new(ca_params(), key)
    } else {
        // A new CA makes every certificate of an older one useless: issue them all again.
        let _ = fs::remove_dir_all(lab_dir.join("pki"));
        let key = KeyPair::generate().map_err(pki_err("generate the CA key"))?;
        let cert = ca_params().self_signed(&key).map_err(pki_err("sign the CA certificate"))?;
        write_set(&ca_dir, &[("cacert.pem", cert.pem(), false), ("cakey.pem", key.serialize_pem(), true)])?;
        Issuer::new(ca_params(), key)
    };
    let ca_pem = fs::read_to_string(&ca_cert).map_err(io_err("read the lab CA certificate"))?;

    let client = client_dir(lab_dir);
    if !complete(&client, &["cacert.pem", "clientcert.pem", "clientkey.pem"]) {
        let (cert, key) = leaf("ferry", &[], ExtendedKeyUsagePurpose::ClientAuth, &issuer)?;
        write_set(
            &client,
            &[("cacert.pem", ca_pem.clone(), false), ("clientcert.pem", cert, false), ("clientkey.pem", key, true)],
        )?;
    }
    for host in hosts {
        let dir = host_dir(lab_dir, &host.name);
        if !complete(&dir, &["cacert.pem", "servercert.pem", "serverkey.pem"]) {
            let (cert, key) = leaf(&host.name, &host.names(), ExtendedKeyUsagePurpose::ServerAuth, &issuer)?;
            write_set(
                &dir,
                &[("cacert.pem", ca_pem.clone(), false), ("servercert.pem", cert, false), ("serverkey.pem", key, true)],
            )?;
        }
        let qemu = migration_dir(lab_dir, &host.name);
        let files = ["ca-cert.pem", "server-cert.pem", "server-key.pem", "client-cert.pem", "client-key.pem"];
        if !complete(&qemu, &files) {
            let (server, server_key) = leaf(&host.name, &host.names(), ExtendedKeyUsagePurpose::ServerAuth, &issuer)?;
            let (client, client_key) = leaf(&host.name, &[], ExtendedKeyUsagePurpose::ClientAuth, &issuer)?;
            write_set(
                &qemu,
                &[
                    ("ca-cert.pem", ca_pem.clone(), false),
                    ("server-cert.pem", server, false),
                    ("server-key.pem", server_key, true),
                    ("client-cert.pem", client, false),
                    ("client-key.pem", client_key, true),
                ],
            )?;
        }
    }
    Ok(())
}

/// A certificate and key issued by a CA of its own, not the lab's: what a host or client
/// of another fleet would present (for tests of a wrong setup). Returns (cert, key) PEM.
pub fn foreign_client() -> Result<(String, String), LabError> {
    let key = KeyPair::generate().map_err(pki_err("generate a key"))?;
    let mut params = ca_params();
    params.distinguished_name.push(DnType::OrganizationalUnitName, "another fleet");
    let issuer = Issuer::new(params, key);
    leaf("ferry", &[], ExtendedKeyUsagePurpose::ClientAuth, &issuer)
}

impl PkiHost {
    /// The names its server certificate carries: its address, its name, localhost.
    fn names(&self) -> Vec<String> {
        let mut names = vec![self.address.to_string(), self.name.clone()];
        if self.address.is_loopback() {
            names.push("localhost".into());
        }
        names
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "ferry lab");
    dn.push(DnType::CommonName, "ferry lab CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A leaf certificate for `common_name` with `names` as subject alternative names. libvirt
/// checks a leaf's key usage when present (digital signature and key encipherment) and its
/// purpose (server or client).
fn leaf(
    common_name: &str,
    names: &[String],
    purpose: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), LabError> {
    let mut params = CertificateParams::new(names.to_vec()).map_err(pki_err("name a certificate"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "ferry lab");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().map_err(pki_err("generate a key"))?;
    let cert = params.signed_by(&key, issuer).map_err(pki_err("sign a certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn complete(dir: &Path, files: &[&str]) -> bool {
    files.iter().all(|f| dir.join(f).is_file())
}

/// Writes a set of files into `dir` (root-only, 0700): each to a temporary name first, keys
/// created 0600 so that they are never readable by others, not even for a moment.
fn write_set(dir: &Path, files: &[(&str, String, bool)]) -> Result<(), LabError> {
    fs::create_dir_all(dir).map_err(io_err("create a certificate directory"))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err("restrict a certificate directory"))?;
    for (name, text, secret) in files {
        write_file(&dir.join(name), text, *secret)?;
    }
    Ok(())
}

/// Writes `text` to `path` through a temporary file; `secret` files are 0600.
pub fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), LabError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io_err("write a certificate or key"))?;
    file.write_all(text.as_bytes()).map_err(io_err("write a certificate or key"))?;
    file.sync_all().map_err(io_err("write a certificate or key"))?;
    fs::rename(&tmp, path).map_err(io_err("write a certificate or key"))
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> LabError {
    move |source| LabError::Io { what: what.to_string(), source }
}

fn pki_err(what: &'static str) -> impl Fn(rcgen::Error) -> LabError {
    move |e| LabError::DaemonFailed { host: "lab CA".into(), reason: format!("could not {what}: {e}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_libvirt_and_qemu_read_is_written_and_keys_are_root_only() {
        let dir = std::env::temp_dir().join(format!("ferry-pki-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let hosts = [PkiHost { name: "host-a".into(), address: Ipv4Addr::LOCALHOST }];
        ensure(&dir, &hosts).expect("issues");
        for file in ["cacert.pem", "clientcert.pem", "clientkey.pem"] {
            assert!(client_dir(&dir).join(file).is_file(), "{file}");
        }
        for file in ["cacert.pem", "servercert.pem", "serverkey.pem"] {
            assert!(host_dir(&dir, "host-a").join(file).is_file(), "{file}");
        }
        for file in ["ca-cert.pem", "server-cert.pem", "server-key.pem", "client-cert.pem", "client-key.pem"] {
            assert!(migration_dir(&dir, "host-a").join(file).is_file(), "{file}");
        }
        let mode = |p: PathBuf| fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(client_dir(&dir).join("clientkey.pem")), 0o600);
        assert_eq!(mode(migration_dir(&dir, "host-a").join("server-key.pem")), 0o600);
        assert_eq!(mode(ca_dir(&dir).join("cakey.pem")), 0o600);
        assert_eq!(mode(client_dir(&dir)), 0o700);

        // Brought up again: nothing is issued anew; a missing set is, by the same CA.
        let before = fs::read_to_string(host_dir(&dir, "host-a").join("servercert.pem")).expect("cert");
        fs::remove_file(client_dir(&dir).join("clientkey.pem")).expect("remove");
        ensure(&dir, &hosts).expect("issues");
        assert_eq!(fs::read_to_string(host_dir(&dir, "host-a").join("servercert.pem")).expect("cert"), before);
        assert!(client_dir(&dir).join("clientkey.pem").is_file());
        let _ = fs::remove_dir_all(&dir);
    }
}
