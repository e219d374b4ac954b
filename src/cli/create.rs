//! `wkube create configmap|secret generic NAME`: objects built from `--from-literal=k=v`
//! and `--from-file=[key=]path` (a file, or a directory's regular files), like kubectl's
//! generators.

use std::path::Path;

use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use thiserror::Error;

use super::Connection;

#[derive(Debug, Error)]
pub enum CreateError {
    #[error("invalid literal source {0}, expected key=value")]
    InvalidLiteral(String),
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cannot add key \"{key}\", another key by that name already exists in {kind} \"{name}\""
    )]
    DuplicateKey {
        key: String,
        kind: &'static str,
        name: String,
    },
}

#[derive(Subcommand)]
pub enum CreateCommand {
    /// A ConfigMap; file contents that are not UTF-8 go to `binaryData`.
    #[command(alias = "cm")]
    Configmap(SourceArgs),
    /// A Secret.
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// An `Opaque` Secret.
    Generic(SourceArgs),
}

#[derive(Args)]
pub struct SourceArgs {
    name: String,
    /// `key=value`; repeatable.
    #[arg(long = "from-literal")]
    literals: Vec<String>,
    /// `path` or `key=path`; a directory adds each regular file in it. Repeatable.
    #[arg(long = "from-file")]
    files: Vec<String>,
    #[command(flatten)]
    conn: Connection,
}

/// The entries of the new object, in the order given.
fn entries(args: &SourceArgs, kind: &'static str) -> Result<Vec<(String, Vec<u8>)>, CreateError> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |key: String, value: Vec<u8>| {
        if out.iter().any(|(k, _)| *k == key) {
            return Err(CreateError::DuplicateKey {
                key,
                kind,
                name: args.name.clone(),
            });
        }
        out.push((key, value));
        Ok(())
    };
    for literal in &args.literals {
        let (k, v) = literal
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| CreateError::InvalidLiteral(literal.clone()))?;
        add(k.to_string(), v.as_bytes().to_vec())?;
    }
    for source in &args.files {
        let (key, path) = match source.split_once('=') {
            Some((k, p)) => (Some(k.to_string()), p),
            None => (None, source.as_str()),
        };
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| CreateError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let path = Path::new(path);
        if key.is_none() && path.is_dir() {
            let dir = std::fs::read_dir(path).map_err(|source| CreateError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let mut files: Vec<_> = dir
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for file in files {
                add(file_key(&file), read(&file)?)?;
            }
        } else {
            add(key.unwrap_or_else(|| file_key(path)), read(path)?)?;
        }
    }
    Ok(out)
}

fn file_key(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn configmap(name: &str, entries: Vec<(String, Vec<u8>)>) -> Value {
    let mut data = Map::new();
    let mut binary = Map::new();
    for (k, v) in entries {
        match String::from_utf8(v) {
            Ok(text) => data.insert(k, json!(text)),
            Err(e) => binary.insert(k, json!(base64_of(e.as_bytes()))),
        };
    }
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
    if !data.is_empty() {
        cm["data"] = Value::Object(data);
    }
    if !binary.is_empty() {
        cm["binaryData"] = Value::Object(binary);
    }
    cm
}

fn secret(name: &str, entries: Vec<(String, Vec<u8>)>) -> Value {
    let data: Map<String, Value> = entries
        .into_iter()
        .map(|(k, v)| (k, json!(base64_of(&v))))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "data": data})
}

fn base64_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub async fn run(cmd: CreateCommand) -> anyhow::Result<()> {
    let (args, object) = match &cmd {
        CreateCommand::Configmap(args) => {
            (args, configmap(&args.name, entries(args, "ConfigMap")?))
        }
        CreateCommand::Secret(SecretCommand::Generic(args)) => {
            (args, secret(&args.name, entries(args, "Secret")?))
        }
    };
    let cluster = args.conn.connect().await?;
    let kind = object["kind"].as_str().unwrap_or_default();
    let res = cluster
        .discovery
        .for_kind("v1", kind)
        .ok_or_else(|| anyhow::anyhow!("the server does not serve {kind}s"))?;
    let ns = args.conn.namespace_or(&cluster);
    cluster.create(res, Some(&ns), &object, false).await?;
    println!("{}/{} created", res.kind_ref(), args.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(literals: &[&str], files: &[&str]) -> SourceArgs {
        SourceArgs {
            name: "n".into(),
            literals: literals.iter().map(|s| s.to_string()).collect(),
            files: files.iter().map(|s| s.to_string()).collect(),
            conn: Connection {
                namespace: None,
                kubeconfig: None,
            },
        }
    }

    #[test]
    fn literals_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), "bee").unwrap();
        std::fs::write(dir.path().join("a.bin"), [0xff, 0x00]).unwrap();
        let file = dir.path().join("b.txt").display().to_string();
        let dir_arg = dir.path().display().to_string();
        let renamed = format!("other={file}");
        let e = entries(&args(&["x=1=2"], &[&renamed, &dir_arg]), "ConfigMap").unwrap();
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["x", "other", "a.bin", "b.txt"]);
        assert_eq!(e[0].1, b"1=2");
        let cm = configmap("n", e);
        assert_eq!(cm["data"]["b.txt"], "bee");
        assert_eq!(cm["binaryData"]["a.bin"], "/wA=");
        let s = secret("n", entries(&args(&["k=v"], &[]), "Secret").unwrap());
        assert_eq!(s["data"]["k"], "dg==");
        assert_eq!(s["type"], "Opaque");
    }

    #[test]
    fn bad_sources_are_errors() {
        let err = entries(&args(&["novalue"], &[]), "ConfigMap").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid literal source novalue, expected key=value"
        );
        let err = entries(&args(&["k=1", "k=2"], &[]), "ConfigMap").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot add key \"k\", another key by that name already exists in ConfigMap \"n\""
        );
        assert!(matches!(
            entries(&args(&[], &["/nonexistent/x"]), "Secret"),
            Err(CreateError::Read { .. })
        ));
    }
}
