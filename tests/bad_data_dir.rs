//! A corrupt or unusable data directory: the member refuses to start with a clear message,
//! and never serves stale or partial state.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Server;

/// Runs `wkube server` on `data_dir`, which must fail to start: returns its stderr. A server
/// that starts serving instead fails the test.
fn refused_start(data_dir: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--node-name",
            "x",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wkube server");
    let status = common::wait_for("the server to give up", Duration::from_secs(30), || {
        child.try_wait().expect("try_wait")
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(!status.success(), "the server started: {stderr}");
    assert!(
        !stderr.contains("serving the Kubernetes API"),
        "it served: {stderr}"
    );
    stderr
}

#[test]
fn a_store_that_lost_committed_data_refuses_to_start() {
    let mut server = Server::start();
    let manifests: Vec<String> = (0..40)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n"))
        .collect();
    let out = server.kubectl_with_stdin(
        "1.33",
        &["apply", "-f", "-"],
        Some(&manifests.join("---\n")),
    );
    assert!(out.status.success());
    let last: u64 = server
        .jsonpath("1.33", &["configmap", "c39"], "{.metadata.resourceVersion}")
        .parse()
        .unwrap();
    let store = server.data_dir.path().join("store");
    common::wait_for(
        "the commit record to cover the writes",
        Duration::from_secs(10),
        || {
            let recorded: u64 = std::fs::read_to_string(store.join("committed"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            (recorded >= last).then_some(())
        },
    );
    server.kill9();

    // Damage the middle of sled's log: sled drops what follows and would open an older state.
    let db = store.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    let (middle, end) = (bytes.len() / 2, (bytes.len() / 2 + 4096).min(bytes.len()));
    bytes[middle..end].fill(0xff);
    std::fs::write(&db, bytes).unwrap();

    let stderr = refused_start(server.data_dir.path());
    assert!(
        stderr.contains(&store.display().to_string()),
        "names the store: {stderr}"
    );
    assert!(
        stderr.contains("has lost committed data") || stderr.contains("corrupt"),
        "says what is wrong: {stderr}"
    );
}

#[test]
fn an_unusable_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Where the store's directory belongs, there is a file.
    std::fs::write(dir.path().join("store"), "not a directory").unwrap();
    let stderr = refused_start(dir.path());
    assert!(stderr.contains("cannot open the store in"), "{stderr}");
}
