//! The cluster's certificate authority and the certificates it issues: the API server's
//! serving certificate, the admin client certificate written into the kubeconfig, and the
//! member certificate for the QUIC links between control-plane members.
//!
//! Everything lives under `<data-dir>/tls`; the CA is created once, at first start, and
//! reused after. Private keys are written with mode 0600.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("join token: {0}")]
    Token(String),
    #[error("PEM: {0}")]
    Pem(String),
    #[error("{path}: not a usable certificate or key: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// PEM-encoded certificate and private key.
#[derive(Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct ClusterPki {
    pub dir: PathBuf,
    pub ca: CertPair,
    pub server: CertPair,
    pub admin: CertPair,
    /// This member's certificate for the links between members (both ends authenticate).
    pub member: CertPair,
}

/// The name every member certificate carries, and the one members dial each other by:
/// a member's identity is being signed by the cluster CA, not its address, which may change.
pub const MEMBER_NAME: &str = "wkube-member";

/// A certificate for the QUIC links between members: server and client at once.
pub fn member_certificate(ca: &CertPair) -> Result<CertPair, PkiError> {
    issue(
        ca,
        MEMBER_NAME,
        None,
        &[SanType::DnsName(MEMBER_NAME.try_into()?)],
        &[
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(contents.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn read_pair(dir: &Path, name: &str) -> Result<Option<CertPair>, PkiError> {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    if !cert.exists() || !key.exists() {
        return Ok(None);
    }
    Ok(Some(CertPair {
        cert_pem: fs::read_to_string(&cert).map_err(io(&cert))?,
        key_pem: fs::read_to_string(&key).map_err(io(&key))?,
    }))
}

fn write_pair(dir: &Path, name: &str, pair: &CertPair) -> Result<(), PkiError> {
    write_file(&dir.join(format!("{name}.key")), &pair.key_pem, 0o600)?;
    write_file(&dir.join(format!("{name}.crt")), &pair.cert_pem, 0o644)
}

fn new_ca() -> Result<CertPair, PkiError> {
    // rcgen's default validity (1975 to 4096) is kept: a small cluster should not stop on
    // a date.
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "wkube-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a leaf certificate signed by `ca`.
pub fn issue(
    ca: &CertPair,
    common_name: &str,
    organization: Option<&str>,
    sans: &[SanType],
    usages: &[ExtendedKeyUsagePurpose],
) -> Result<CertPair, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        params.distinguished_name.push(DnType::OrganizationName, o);
    }
    params.subject_alt_names = sans.to_vec();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages.to_vec();
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

impl ClusterPki {
    /// Loads the cluster's certificates from `<data_dir>/tls`, creating whatever is missing.
    /// `server_names` are the DNS names and IPs the API server certificate must cover.
    pub fn load_or_create(data_dir: &Path, server_names: &[String]) -> Result<Self, PkiError> {
        let dir = data_dir.join("tls");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let ca = match read_pair(&dir, "ca")? {
            Some(ca) => ca,
            None => {
                let ca = new_ca()?;
                write_pair(&dir, "ca", &ca)?;
                ca
            }
        };
        let server = match read_pair(&dir, "server")? {
            Some(s) => s,
            None => {
                let sans = server_names
                    .iter()
                    .map(|n| match n.parse() {
                        Ok(ip) => Ok(SanType::IpAddress(ip)),
                        Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
                    })
                    .collect::<Result<Vec<_>, rcgen::Error>>()?;
                let s = issue(
                    &ca,
                    "wkube-apiserver",
                    None,
                    &sans,
                    &[ExtendedKeyUsagePurpose::ServerAuth],
                )?;
                write_pair(&dir, "server", &s)?;
                s
            }
        };
        let admin = match read_pair(&dir, "admin")? {
            Some(a) => a,
            None => {
                // system:masters is the group Kubernetes grants cluster-admin to.
                let a = issue(
                    &ca,
                    "wkube-admin",
                    Some("system:masters"),
                    &[],
                    &[ExtendedKeyUsagePurpose::ClientAuth],
                )?;
                write_pair(&dir, "admin", &a)?;
                a
            }
        };
        let member = match read_pair(&dir, "member")? {
            Some(m) => m,
            None => {
                let m = member_certificate(&ca)?;
                write_pair(&dir, "member", &m)?;
                m
            }
        };
        Ok(ClusterPki {
            dir,
            ca,
            server,
            admin,
            member,
        })
    }

    /// A kubeconfig for the admin user, with certificates embedded so it works from anywhere.
    pub fn admin_kubeconfig(&self, server_url: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: wkube\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {}\nusers:\n- name: wkube-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: wkube\n  context:\n    cluster: wkube\n    user: wkube-admin\n    namespace: default\ncurrent-context: wkube\n",
            b64(&self.ca.cert_pem),
            b64(&self.admin.cert_pem),
            b64(&self.admin.key_pem),
        )
    }

    pub fn write_admin_kubeconfig(&self, path: &Path, server_url: &str) -> Result<(), PkiError> {
        write_file(path, &self.admin_kubeconfig(server_url), 0o600)
    }

    /// The token new members join with, created at first need and kept in `tls/token`.
    pub fn join_token(&self) -> Result<JoinToken, PkiError> {
        let path = self.dir.join("token");
        let secret = match fs::read_to_string(&path) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = format!("{}", uuid::Uuid::new_v4().simple());
                write_file(&path, &secret, 0o600)?;
                secret
            }
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(JoinToken {
            ca_hash: ca_hash(&self.ca.cert_pem),
            secret,
        })
    }

    /// Writes a cluster's CA and join token into `<data_dir>/tls` before
    /// [`ClusterPki::load_or_create`], so a joining member's certificates are issued by the
    /// cluster it joins, and it admits new members with the same token as the others.
    pub fn adopt(data_dir: &Path, ca: &CertPair, token: &JoinToken) -> Result<(), PkiError> {
        let dir = data_dir.join("tls");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_file(&dir.join("token"), &token.secret, 0o600)?;
        write_pair(&dir, "ca", ca)
    }
}

impl CertPair {
    /// The certificate chain, DER-encoded, for rustls.
    pub fn cert_chain(&self) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, PkiError> {
        rustls_pemfile::certs(&mut self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PkiError::Pem(e.to_string()))
    }

    /// The private key, DER-encoded, for rustls.
    pub fn private_key(&self) -> Result<rustls::pki_types::PrivateKeyDer<'static>, PkiError> {
        rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .map_err(|e| PkiError::Pem(e.to_string()))?
            .ok_or_else(|| PkiError::Pem("no private key in PEM".into()))
    }
}

/// The SHA-256 of the CA certificate's PEM, hex: what a join token pins.
pub fn ca_hash(ca_pem: &str) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(ca_pem.as_bytes()))
}

/// What a member needs to join: the CA it must find (by hash, like k3s' `K10` tokens) and
/// the secret that admits it. Printed as `K10<ca hash>::server:<secret>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_hash: String,
    pub secret: String,
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "K10{}::server:{}", self.ca_hash, self.secret)
    }
}

impl std::str::FromStr for JoinToken {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, PkiError> {
        let invalid = || PkiError::Token("expected K10<sha256 of the CA>::server:<secret>".into());
        let rest = s.trim().strip_prefix("K10").ok_or_else(invalid)?;
        let (ca_hash, secret) = rest.split_once("::server:").ok_or_else(invalid)?;
        let hex = |c: char| c.is_ascii_hexdigit();
        if ca_hash.len() != 64 || !ca_hash.chars().all(hex) || secret.is_empty() {
            return Err(invalid());
        }
        Ok(JoinToken {
            ca_hash: ca_hash.to_lowercase(),
            secret: secret.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let first = ClusterPki::load_or_create(dir.path(), &names).unwrap();
        let second = ClusterPki::load_or_create(dir.path(), &names).unwrap();
        assert_eq!(first.ca.cert_pem, second.ca.cert_pem);
        assert_eq!(first.admin.cert_pem, second.admin.cert_pem);
        let kc = first.admin_kubeconfig("https://127.0.0.1:6443");
        assert!(kc.contains("client-certificate-data:"));
    }

    #[test]
    fn join_token_round_trips_and_pins_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(dir.path(), &[]).unwrap();
        let token = pki.join_token().unwrap();
        assert_eq!(pki.join_token().unwrap(), token, "kept across calls");
        let parsed: JoinToken = token.to_string().parse().unwrap();
        assert_eq!(parsed, token);
        assert_eq!(parsed.ca_hash, ca_hash(&pki.ca.cert_pem));
        for bad in [
            "",
            "K10abc::server:x",
            "nope",
            &format!("K10{}::server:", token.ca_hash),
        ] {
            assert!(bad.parse::<JoinToken>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_joiner_adopts_the_ca_and_token_and_issues_its_own_certificates() {
        let first = tempfile::tempdir().unwrap();
        let cluster = ClusterPki::load_or_create(first.path(), &[]).unwrap();
        let joiner = tempfile::tempdir().unwrap();
        let token = cluster.join_token().unwrap();
        ClusterPki::adopt(joiner.path(), &cluster.ca, &token).unwrap();
        let pki = ClusterPki::load_or_create(joiner.path(), &[]).unwrap();
        assert_eq!(pki.ca.cert_pem, cluster.ca.cert_pem);
        assert_eq!(
            pki.join_token().unwrap(),
            token,
            "one token for the whole cluster"
        );
        assert_ne!(
            pki.member.cert_pem, cluster.member.cert_pem,
            "its own member certificate"
        );
    }
}
