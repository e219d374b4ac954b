//! The cost of sealing Secrets at rest, side by side with the same writes in plaintext: a
//! one-member store (raft log and state in sled, fsync per group commit) takes 1 KiB
//! ConfigMaps and 1 KiB Secrets alternately, in rounds, from 1 and from 64 concurrent
//! writers; then every object is read back (`get`) and listed, which for Secrets opens
//! every envelope.
//!
//! Usage: `cargo bench -p control --bench secrets_at_rest`.

use std::time::{Duration, Instant};

use control::store::{Op, Store};
use serde_json::{json, Value};

const OBJECTS: usize = 2_000;
const ROUNDS: usize = 3;

fn object(kind: &str, name: &str) -> Value {
    let value = "x".repeat(1024);
    let data = match kind {
        "Secret" => json!({"value": base64_1k(&value)}),
        _ => json!({"value": value}),
    };
    json!({"apiVersion": "v1", "kind": kind,
           "metadata": {"name": name, "namespace": "default"}, "data": data})
}

fn base64_1k(s: &str) -> String {
    use base64::Engine as _;
    // 768 bytes encode to 1 KiB of base64: the same stored size as the ConfigMap's value.
    base64::engine::general_purpose::STANDARD.encode(&s.as_bytes()[..768])
}

fn prefix(kind: &str) -> &'static str {
    if kind == "Secret" {
        "secrets/default/"
    } else {
        "configmaps/default/"
    }
}

/// Writes `OBJECTS` objects of `kind` from `writers` concurrent tasks; returns writes/s.
async fn write(store: &Store, kind: &'static str, round: usize, writers: usize) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..OBJECTS).step_by(writers) {
                let name = format!("r{round}-w{writers}-{i}");
                let op = Op::Create {
                    key: format!("{}{name}", prefix(kind)),
                    object: object(kind, &name),
                };
                store.write(op).await.expect("write");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    OBJECTS as f64 / start.elapsed().as_secs_f64()
}

/// Reads every object of `kind` one by one, then lists them all; returns (gets/s, list time).
fn read(store: &Store, kind: &str) -> (f64, Duration) {
    let (all, _) = store.list(prefix(kind)).expect("list");
    let start = Instant::now();
    for o in &all {
        let name = o["metadata"]["name"].as_str().expect("name");
        store
            .get(&format!("{}{name}", prefix(kind)))
            .expect("get")
            .expect("present");
    }
    let gets = all.len() as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let (listed, _) = store.list(prefix(kind)).expect("list");
    assert_eq!(listed.len(), all.len());
    (gets, start.elapsed())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _driver) = Store::open(dir.path()).expect("store");
    println!("| writers | ConfigMap writes/s | Secret writes/s (sealed) | cost |");
    println!("|---|---|---|---|");
    for writers in [1, 64] {
        let (mut plain, mut sealed) = (Vec::new(), Vec::new());
        // Interleaved rounds: both kinds see the same state of the disk and the machine.
        for round in 0..ROUNDS {
            plain.push(write(&store, "ConfigMap", round, writers).await);
            sealed.push(write(&store, "Secret", round, writers).await);
        }
        let (p, s) = (median(plain), median(sealed));
        println!(
            "| {writers} | {p:.0} | {s:.0} | {:+.1}% time per write |",
            (p / s - 1.0) * 100.0
        );
    }
    let (cm_gets, cm_list) = read(&store, "ConfigMap");
    let (s_gets, s_list) = read(&store, "Secret");
    let n = store.list("secrets/").expect("list").0.len();
    println!();
    println!("| reads ({n} objects each) | ConfigMap | Secret (opened) |");
    println!("|---|---|---|");
    println!("| get, one by one | {cm_gets:.0}/s | {s_gets:.0}/s |");
    println!("| list, all | {cm_list:.1?} | {s_list:.1?} |");
}
