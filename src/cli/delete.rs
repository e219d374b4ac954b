//! `wkube delete`: by name, by label (`-l`), every object of a kind (`--all`), or the
//! objects of manifests (`-f`). Like kubectl it deletes one object at a time, reports each
//! missing one and goes on, and waits until the deleted objects are gone.

use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::client::{ClientError, Cluster, Selectors};
use super::discovery::ApiResource;
use super::manifest;
use super::{Connection, Reported};

#[derive(Args)]
pub struct DeleteArgs {
    /// The resource type, then the names: `pod hello`, `cm a b`.
    #[arg(required_unless_present = "files")]
    kind: Option<String>,
    names: Vec<String>,
    /// Delete the objects of these manifests (file, directory or `-`).
    #[arg(short = 'f', long = "filename", conflicts_with_all = ["kind", "selector", "all"])]
    files: Vec<String>,
    /// Delete the objects matching this label selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Delete every object of the kind in the namespace.
    #[arg(long, conflicts_with = "selector")]
    all: bool,
    /// Return without waiting for the objects to be gone.
    #[arg(long = "wait", default_value_t = true, action = clap::ArgAction::Set)]
    wait: bool,
    #[command(flatten)]
    conn: Connection,
}

/// One object to delete; `source` is the manifest it came from, for error messages.
struct Target<'a> {
    res: &'a ApiResource,
    ns: Option<String>,
    name: String,
    source: Option<String>,
}

pub async fn run(args: DeleteArgs) -> anyhow::Result<()> {
    let docs = if args.files.is_empty() {
        Vec::new()
    } else {
        manifest::read_all(&args.files, "delete")?
    };
    let cluster = args.conn.connect().await?;
    let ns = args.conn.namespace_or(&cluster);
    let mut targets = Vec::new();
    if let Some(kind) = &args.kind {
        let res = cluster.discovery.for_name(kind)?;
        let names = if args.all || args.selector.is_some() {
            anyhow::ensure!(
                args.names.is_empty(),
                "name cannot be provided when a selector is specified"
            );
            let sel = Selectors {
                labels: args.selector.clone(),
                fields: None,
            };
            let list = cluster.list(res, Some(&ns), &sel).await?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!("No resources found");
                return Ok(());
            }
            items.iter().map(|o| name_of(o).to_string()).collect()
        } else {
            anyhow::ensure!(
                !args.names.is_empty(),
                "resource(s) were provided, but no name was specified"
            );
            args.names.clone()
        };
        for name in names {
            targets.push(Target {
                res,
                ns: res.namespaced.then(|| ns.clone()),
                name,
                source: None,
            });
        }
    }
    for doc in &docs {
        let (res, ns) = manifest::resolve(doc, &cluster.discovery, &ns)?;
        targets.push(Target {
            res,
            ns,
            name: doc.name().to_string(),
            source: Some(doc.file.clone()),
        });
    }

    let mut failed = false;
    let mut deleted = Vec::new();
    for t in &targets {
        match cluster.delete(t.res, t.ns.as_deref(), &t.name).await {
            Ok(_) => {
                println!("{} \"{}\" deleted", t.res.kind_ref(), t.name);
                deleted.push(t);
            }
            Err(e) => {
                let e = match &t.source {
                    Some(file) => e.when(format!("error when deleting \"{file}\"")),
                    None => e,
                };
                eprintln!("{}", super::render(&e.into()));
                failed = true;
            }
        }
    }
    if args.wait {
        for t in deleted {
            wait_gone(&cluster, t).await?;
        }
    }
    if failed {
        return Err(Reported.into());
    }
    Ok(())
}

fn name_of(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Objects with a grace period (pods) or finalizers outlive the DELETE call.
async fn wait_gone(cluster: &Cluster, t: &Target<'_>) -> Result<(), ClientError> {
    loop {
        match cluster.get(t.res, t.ns.as_deref(), &t.name).await {
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
