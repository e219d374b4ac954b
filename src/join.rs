//! Joining an existing cluster (`wkube server --join <member> --token <token>`), the k3s way:
//! fetch the cluster CA without trusting the server, check it against the hash the token pins,
//! then, over TLS verified with that CA, trade the token's secret for the CA key, issue this
//! member's own certificates, and ask to be added as a member.

use anyhow::{bail, Context as _};
use base64::Engine as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

use control::api::cluster::{Bootstrap, BOOTSTRAP, CACERTS, MEMBERS};
use control::pki::{ca_hash, CertPair, ClusterPki, JoinToken};
use control::store::{Kek, Member};

pub(crate) enum Credentials<'a> {
    /// Only for fetching the CA, whose hash is checked before it is used.
    Insecure,
    Token(&'a str),
    Certificate(&'a CertPair),
}

/// A client for one member's HTTPS endpoint. Built from a kubeconfig so that the `kube`
/// client does TLS and authentication as it does for every other client.
pub(crate) async fn client(
    url: &str,
    ca_pem: Option<&str>,
    credentials: Credentials<'_>,
) -> anyhow::Result<kube::Client> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let cluster = match (ca_pem, &credentials) {
        (Some(ca), _) => format!("certificate-authority-data: {}", b64(ca)),
        (None, Credentials::Insecure) => "insecure-skip-tls-verify: true".to_string(),
        (None, _) => bail!("credentials are only sent to a server verified with the cluster CA"),
    };
    let user = match credentials {
        Credentials::Insecure => "{}".to_string(),
        Credentials::Token(secret) => format!("{{token: {secret}}}"),
        Credentials::Certificate(pair) => format!(
            "{{client-certificate-data: {}, client-key-data: {}}}",
            b64(&pair.cert_pem),
            b64(&pair.key_pem)
        ),
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: '{url}', {cluster}}}}}]\n\
         users: [{{name: u, user: {user}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
    );
    let kubeconfig =
        Kubeconfig::from_yaml(&yaml).context("building the join client's kubeconfig")?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn get(path: &str) -> anyhow::Result<http::Request<Vec<u8>>> {
    Ok(http::Request::get(path).body(Vec::new())?)
}

/// The cluster's CA (certificate and key) and the key-encryption key of its Secrets, from
/// the member at `url`.
pub async fn fetch_ca(url: &str, token: &JoinToken) -> anyhow::Result<(CertPair, Kek)> {
    let insecure = client(url, None, Credentials::Insecure).await?;
    let ca_pem = insecure
        .request_text(get(CACERTS)?)
        .await
        .with_context(|| format!("fetching the CA of {url}"))?;
    if ca_hash(&ca_pem) != token.ca_hash {
        bail!("the CA of {url} is not the one the token names: not joining it");
    }
    let trusted = client(url, Some(&ca_pem), Credentials::Token(&token.secret)).await?;
    let bootstrap: Bootstrap = trusted
        .request(get(BOOTSTRAP)?)
        .await
        .with_context(|| format!("presenting the token to {url}"))?;
    let kek = Kek::decode(&bootstrap.encryption_key)
        .with_context(|| format!("the encryption key {url} sent"))?;
    let ca = CertPair {
        cert_pem: bootstrap.ca_cert,
        key_pem: bootstrap.ca_key,
    };
    Ok((ca, kek))
}

/// Asks the cluster, through the member at `url`, to add `member`.
pub async fn add_member(url: &str, pki: &ClusterPki, member: &Member) -> anyhow::Result<()> {
    let client = client(
        url,
        Some(&pki.ca.cert_pem),
        Credentials::Certificate(&pki.admin),
    )
    .await?;
    let request = http::Request::post(MEMBERS)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(member)?)?;
    client
        .request_text(request)
        .await
        .with_context(|| format!("asking {url} to add this member"))?;
    Ok(())
}
