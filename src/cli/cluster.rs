//! `wkube cluster status`: the control-plane members, each as it sees itself (role, term,
//! applied index), and how far each one's log lags the leader's. `wkube cluster remove`:
//! takes a member out of the raft group and deletes its Node.

use std::path::Path;

use clap::{Args, Subcommand};
use control::api::cluster::{MEMBERS, STATUS};
use futures::future::join_all;
use http::Method;
use serde_json::Value;

use super::client::{ClientError, Cluster, MEMBER_TIMEOUT};
use super::printer::TabWriter;
use super::Connection;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Members, leader, term, applied index and lag of each member.
    Status(StatusArgs),
    /// Remove a member (by id, API URL or node name) and delete its Node.
    Remove(RemoveArgs),
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    conn: Connection,
}

#[derive(Args)]
pub struct RemoveArgs {
    /// The member: its id, its API URL, or the name of its Node.
    member: String,
    #[command(flatten)]
    conn: Connection,
}

pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status(args) => status(args).await,
        ClusterCommand::Remove(args) => remove(args).await,
    }
}

async fn member_status(
    kubeconfig: Option<&Path>,
    server: Option<&str>,
) -> Result<Value, ClientError> {
    Cluster::member_request(kubeconfig, server, Method::GET, STATUS, MEMBER_TIMEOUT).await
}

async fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let kubeconfig = args.conn.kubeconfig.as_deref();
    let view = member_status(kubeconfig, None).await?;
    let members = view["members"].as_array().cloned().unwrap_or_default();
    let named = |m: &&Value| {
        let id = m["id"].to_string();
        let names = [
            id.as_str(),
            m["apiUrl"].as_str().unwrap_or_default(),
            m["nodeName"].as_str().unwrap_or_default(),
        ];
        names.contains(&args.member.as_str())
    };
    let Some(gone) = members.iter().find(named) else {
        anyhow::bail!(
            "no member {:?}: members are named by id, API URL or node name",
            args.member
        );
    };
    // Asked of another member: the removed one stops as soon as it applies its removal.
    let other = members
        .iter()
        .find(|m| m["id"] != gone["id"])
        .and_then(|m| m["apiUrl"].as_str());
    let path = format!("{MEMBERS}/{}", gone["id"]);
    Cluster::member_request(kubeconfig, other, Method::DELETE, &path, MEMBER_TIMEOUT).await?;
    println!("member {} removed", gone["id"]);
    if let Some(node) = gone["nodeName"].as_str().filter(|n| !n.is_empty()) {
        let path = format!("/api/v1/nodes/{node}");
        Cluster::member_request(kubeconfig, other, Method::DELETE, &path, MEMBER_TIMEOUT).await?;
        println!("node \"{node}\" deleted");
    }
    Ok(())
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let kubeconfig = args.conn.kubeconfig.as_deref();
    let first = member_status(kubeconfig, None).await?;
    let members = first["members"].as_array().cloned().unwrap_or_default();
    // Each member answers for itself: its own role, term and applied index.
    let views = join_all(
        members
            .iter()
            .map(|m| member_status(kubeconfig, m["apiUrl"].as_str())),
    )
    .await;
    let leader_id = first["leader"].as_u64().unwrap_or(0);
    let leader = views
        .iter()
        .flatten()
        .find(|v| v["id"].as_u64() == Some(leader_id) && v["role"] == "Leader");
    let rows: Vec<Vec<String>> = members
        .iter()
        .zip(&views)
        .map(|(m, view)| row(m, view.as_ref().ok(), leader))
        .collect();
    let mut text = ["ID", "API", "ROLE", "VOTER", "TERM", "APPLIED", "LAG"].join("\t") + "\n";
    for row in rows {
        text.push_str(&(row.join("\t") + "\n"));
    }
    print!("{}", TabWriter::table().format(&text));
    Ok(())
}

fn row(member: &Value, view: Option<&Value>, leader: Option<&Value>) -> Vec<String> {
    let id = member["id"].as_u64().unwrap_or(0);
    let text = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (role, term, applied) = match view {
        Some(v) => (text(&v["role"]), text(&v["term"]), text(&v["applied"])),
        None => ("Unreachable".into(), "-".into(), "-".into()),
    };
    vec![
        id.to_string(),
        text(&member["apiUrl"]),
        role,
        text(&member["voter"]),
        term,
        applied,
        lag(id, leader),
    ]
}

/// Entries the leader has committed that the member's log does not have yet.
fn lag(id: u64, leader: Option<&Value>) -> String {
    let Some(leader) = leader else {
        return "-".into();
    };
    let matched = leader["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["id"].as_u64() == Some(id)))
        .and_then(|m| m["matched"].as_u64());
    match (leader["commit"].as_u64(), matched) {
        (Some(commit), Some(matched)) => commit.saturating_sub(matched).to_string(),
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lag_is_what_the_leader_committed_beyond_the_members_log() {
        let leader = json!({"id": 1, "commit": 40, "members": [{"id": 1, "matched": 40}, {"id": 2, "matched": 31}, {"id": 3}]});
        assert_eq!(lag(1, Some(&leader)), "0");
        assert_eq!(lag(2, Some(&leader)), "9");
        assert_eq!(lag(3, Some(&leader)), "-");
        assert_eq!(lag(2, None), "-");
        let member = json!({"id": 2, "apiUrl": "https://b", "voter": true});
        let row = row(&member, None, Some(&leader));
        assert_eq!(
            row,
            ["2", "https://b", "Unreachable", "true", "-", "-", "9"]
        );
    }
}
