//! Several members in one process, linked over QUIC on loopback: membership, replication,
//! forwarding, reads on followers and failover.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::pki::{self, ClusterPki};

struct Member {
    store: Store,
    driver: DriverHandle,
    _dir: tempfile::TempDir,
}

/// The cluster's key-encryption key, which every member holds (a joiner receives it with
/// the CA key).
const CLUSTER_KEK: &str = "d2t1YmUgY2x1c3RlciB0ZXN0cyBrZXkgMzIgYnl0ZXM=";

fn start(fresh: FreshStart, ca: &CertPair) -> Member {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        fresh,
        retention: LogRetention::default(),
        peers: Some(PeerLinks {
            listen: "127.0.0.1:0".parse().unwrap(),
            ca: ca.clone(),
            certificate: pki::member_certificate(ca).unwrap(),
        }),
        kek: Some(Kek::decode(CLUSTER_KEK).unwrap()),
    };
    let (store, driver) = Store::open_with(dir.path(), config).unwrap();
    Member {
        store,
        driver,
        _dir: dir,
    }
}

fn info(m: &Member) -> super::Member {
    super::Member {
        id: m.store.member_id(),
        peer_addr: m.store.peer_addr().unwrap(),
        api_url: String::new(),
        node_name: String::new(),
    }
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a create is known to have been applied: an earlier attempt that failed with an
/// unknown outcome (the leader changed) may have been, and then this one finds it.
fn committed(outcome: Result<Value, StoreError>) -> Option<()> {
    matches!(outcome, Ok(_) | Err(StoreError::AlreadyExists)).then_some(())
}

fn cm(name: &str) -> Op {
    Op::Create {
        key: format!("configmaps/default/{name}"),
        object: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}}),
    }
}

async fn three_members() -> Vec<Member> {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterPki::load_or_create(dir.path(), &[]).unwrap().ca;
    let first = start(
        FreshStart::Bootstrap {
            api_url: String::new(),
            node_name: String::new(),
        },
        &ca,
    );
    let mut members = vec![first];
    for _ in 0..2 {
        let joiner = start(
            FreshStart::Join {
                id: new_member_id(),
            },
            &ca,
        );
        members[0].store.add_member(info(&joiner)).await.unwrap();
        members.push(joiner);
    }
    let leader = &members[0].store;
    eventually("both joiners to become voters", async || {
        let status = leader.status().await.ok()?;
        (status.members.len() == 3 && status.members.iter().all(|m| m.voter)).then_some(())
    })
    .await;
    members
}

#[tokio::test(flavor = "multi_thread")]
async fn joiners_catch_up_and_every_member_reads_and_writes() {
    let members = three_members().await;
    // Written before and after the joins: the joiners got the first from a snapshot.
    let a = members[0].store.write(cm("a")).await.unwrap();
    for m in &members[1..] {
        m.store.read_barrier().await.unwrap();
        assert_eq!(
            m.store.get("configmaps/default/a").unwrap().as_ref(),
            Some(&a),
            "linearizable read on a follower"
        );
    }
    // A follower's write is forwarded to the leader and acknowledged once applied here.
    let b = members[2].store.write(cm("b")).await.unwrap();
    assert_eq!(
        members[2]
            .store
            .get("configmaps/default/b")
            .unwrap()
            .as_ref(),
        Some(&b)
    );
    members[0].store.read_barrier().await.unwrap();
    assert_eq!(
        members[0].store.get("configmaps/default/b").unwrap(),
        Some(b.clone())
    );
    // Every member has the same objects at the same revisions, once it has read up to now.
    for m in &members {
        m.store.read_barrier().await.unwrap();
    }
    let lists: Vec<_> = members
        .iter()
        .map(|m| m.store.list("configmaps/").unwrap().0)
        .collect();
    assert!(lists.windows(2).all(|w| w[0] == w[1]), "{lists:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_sealed_on_one_member_opens_on_the_others_across_a_rotation() {
    let members = three_members().await;
    let secret = |name: &str| Op::Create {
        key: format!("secrets/default/{name}"),
        object: json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"}, "data": {"k": "dmFsdWU="}}),
    };
    // Written on a follower: it creates the keyring too.
    let a = members[2].store.write(secret("a")).await.unwrap();
    for m in &members {
        m.store.read_barrier().await.unwrap();
        assert_eq!(m.store.get("secrets/default/a").unwrap(), Some(a.clone()));
    }
    // Rotated on one member while another writes.
    let (rotation, b) = tokio::join!(
        members[1].store.rotate_key(),
        members[0].store.write(secret("b"))
    );
    let rotation = rotation.unwrap();
    b.unwrap();
    for m in &members {
        m.store.read_barrier().await.unwrap();
        let (secrets, _) = m.store.list("secrets/").unwrap();
        assert!(
            secrets.iter().all(|s| s["data"]["k"] == "dmFsdWU="),
            "{secrets:?}"
        );
        let report = m.store.check_encryption().unwrap();
        assert!(report.clean(), "{report:?}");
        assert_eq!(
            report.sealed,
            HashMap::from([(rotation.current_key.clone(), 2)])
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_majority_goes_on_when_the_leader_stops() {
    let mut members = three_members().await;
    members[0].store.write(cm("before")).await.unwrap();
    let old = members.remove(0);
    let old_id = old.store.member_id();
    drop(old.store);
    old.driver.join().unwrap().unwrap();

    let stopped = Instant::now();
    eventually("a write to succeed without the old leader", async || {
        committed(members[0].store.write(cm("after")).await)
    })
    .await;
    let failover = stopped.elapsed();
    assert!(failover < Duration::from_secs(10), "took {failover:?}");
    let status = members[1].store.status().await.unwrap();
    assert_ne!(status.leader, old_id);
    members[1].store.read_barrier().await.unwrap();
    assert!(members[1]
        .store
        .get("configmaps/default/after")
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_alone_cannot_commit() {
    let mut members = three_members().await;
    let lonely = members.remove(0);
    for m in members {
        drop(m.store);
        m.driver.join().unwrap().unwrap();
    }
    // With two of three gone, the write is never acknowledged: an error, not a success (the
    // leader steps down when it stops hearing from a quorum, failing what it had pending).
    let outcome = lonely.store.write(cm("lost")).await;
    assert!(
        matches!(
            outcome,
            Err(StoreError::Timeout(_) | StoreError::Unavailable | StoreError::LeaderChanged)
        ),
        "{outcome:?}"
    );
}

/// The next `n` events of a subscription: its backlog first, then live ones.
async fn events(sub: &mut Subscription, n: usize) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = sub
        .backlog
        .drain(..)
        .map(|e| (e.revision, e.key.clone()))
        .collect();
    while out.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(20), sub.live.recv())
            .await
            .expect("an event in time")
            .unwrap();
        out.push((e.revision, e.key.clone()));
    }
    out.truncate(n);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_resumes_on_another_member_across_a_leader_change() {
    let mut members = three_members().await;
    let start = members[2].store.revision();
    let mut watch = members[2].store.watch(start).unwrap();
    for i in 0..10 {
        members[1]
            .store
            .write(cm(&format!("before-{i}")))
            .await
            .unwrap();
    }
    let seen = events(&mut watch, 10).await;

    // The leader goes; the watcher reconnects to another member from the last revision seen.
    let old = members.remove(0);
    drop(old.store);
    old.driver.join().unwrap().unwrap();
    for i in 0..10 {
        eventually("a write under the new leader", async || {
            committed(members[0].store.write(cm(&format!("after-{i}"))).await)
        })
        .await;
    }
    let last = seen.last().unwrap().0;
    let mut resumed = members[0].store.watch(last).unwrap();
    let rest = events(&mut resumed, 10).await;

    let all: Vec<(u64, String)> = seen.into_iter().chain(rest).collect();
    let keys: Vec<&str> = all
        .iter()
        .map(|(_, k)| k.trim_start_matches("configmaps/default/"))
        .collect();
    let expected: Vec<String> = (0..10)
        .map(|i| format!("before-{i}"))
        .chain((0..10).map(|i| format!("after-{i}")))
        .collect();
    assert_eq!(keys, expected, "every change once, in order");
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "revisions only grow: {all:?}"
    );
}
