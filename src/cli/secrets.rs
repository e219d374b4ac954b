//! `wkube secrets rotate-key`: a new data key for Secrets, every Secret sealed again with it,
//! the keys no Secret uses retired. `wkube secrets check`: shows that a member's raw storage
//! holds no Secret in plaintext, through the API of a running member or, with `--data-dir`,
//! straight from the files of a stopped one; exits 1 if it finds plaintext.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use control::api::cluster::{CHECK_SECRETS, ROTATE_KEY};
use control::store::{check_stopped, CheckReport, Rotation};
use http::Method;

use super::client::{Cluster, MEMBER_TIMEOUT};
use super::Connection;

/// How long a rotation may take: it writes every Secret once.
const ROTATION_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Make a new data key current, re-encrypt every Secret with it, retire unused keys.
    RotateKey(RotateArgs),
    /// Report Secrets stored in plaintext (exit code 1 if there are any).
    Check(CheckArgs),
}

#[derive(Args)]
pub struct RotateArgs {
    #[command(flatten)]
    conn: Connection,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Scan the files of a stopped member in this data directory instead of asking a
    /// running one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    conn: Connection,
}

/// Found plaintext: the report is printed, only the exit code is left to set.
#[derive(Debug, thiserror::Error)]
#[error("Secrets are stored in plaintext")]
pub struct Plaintext;

pub async fn run(command: SecretsCommand) -> anyhow::Result<()> {
    match command {
        SecretsCommand::RotateKey(args) => rotate(args).await,
        SecretsCommand::Check(args) => check(args).await,
    }
}

async fn rotate(args: RotateArgs) -> anyhow::Result<()> {
    let kubeconfig = args.conn.kubeconfig.as_deref();
    let answer =
        Cluster::member_request(kubeconfig, None, Method::POST, ROTATE_KEY, ROTATION_TIMEOUT)
            .await?;
    let rotation: Rotation = serde_json::from_value(answer).context("the server's answer")?;
    println!("data key {} is current", rotation.current_key);
    println!("re-encrypted Secrets: {}", rotation.reencrypted);
    if !rotation.retired_keys.is_empty() {
        println!("retired data keys: {}", rotation.retired_keys.join(", "));
    }
    Ok(())
}

async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let report = match &args.data_dir {
        Some(dir) => {
            let store = dir.join("store");
            check_stopped(&store)
                .with_context(|| format!("reading {} (is the member stopped?)", store.display()))?
        }
        None => {
            let kubeconfig = args.conn.kubeconfig.as_deref();
            let answer = Cluster::member_request(
                kubeconfig,
                None,
                Method::GET,
                CHECK_SECRETS,
                MEMBER_TIMEOUT,
            )
            .await?;
            serde_json::from_value(answer).context("the server's answer")?
        }
    };
    print!("{}", render(&report));
    if report.clean() {
        Ok(())
    } else {
        Err(Plaintext.into())
    }
}

fn render(report: &CheckReport) -> String {
    let mut out = String::new();
    let mut sealed: Vec<_> = report.sealed.iter().collect();
    sealed.sort();
    for (key, n) in sealed {
        out += &format!("encrypted with data key {key}: {n}\n");
    }
    out += &format!("plaintext: {}\n", report.plaintext.len());
    for key in &report.plaintext {
        out += &format!("  {key}\n");
    }
    out += &format!(
        "raft log entries with plaintext: {}\n",
        report.plaintext_log_entries.len()
    );
    if let Some(current) = &report.current_key {
        out += &format!(
            "current data key: {current} (keyring: {})\n",
            report.keys.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_plaintext_secrets() {
        let report = CheckReport {
            sealed: [("k2".to_string(), 3)].into(),
            plaintext: vec!["secrets/default/old".into()],
            plaintext_log_entries: vec![7],
            current_key: Some("k2".into()),
            keys: vec!["k1".into(), "k2".into()],
        };
        assert_eq!(
            render(&report),
            "encrypted with data key k2: 3\nplaintext: 1\n  secrets/default/old\n\
             raft log entries with plaintext: 1\ncurrent data key: k2 (keyring: k1, k2)\n"
        );
    }
}
