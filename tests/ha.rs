//! The replicated control plane with real processes on loopback: members join with a token,
//! every member serves kubectl, and `kill -9` of the leader loses no acknowledged write.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};

use common::Server;

const KUBECTL: &str = "1.33";

fn three_members() -> Vec<Server> {
    let first = Server::start_member("a", None);
    let b = Server::start_member("b", Some(&first));
    let c = Server::start_member("c", Some(&first));
    vec![first, b, c]
}

#[test]
fn members_join_with_the_token_and_each_serves_kubectl() {
    let members = three_members();
    common::wait_for(
        "three voters, one leader, none lagging",
        Duration::from_secs(30),
        || {
            let rows = members[1].cluster_status();
            let leaders = rows.iter().filter(|r| r[2] == "Leader").count();
            (rows.len() == 3 && leaders == 1 && rows.iter().all(|r| r[3] == "true" && r[6] == "0"))
                .then_some(())
        },
    );
    // Written through one member, read through the others, with the same resourceVersion.
    members[2].kubectl_ok(
        KUBECTL,
        &["create", "configmap", "shared", "--from-literal=k=v"],
    );
    let versions: Vec<String> = members
        .iter()
        .map(|m| {
            m.jsonpath(
                KUBECTL,
                &["configmap", "shared"],
                "{.metadata.resourceVersion} {.data.k}",
            )
        })
        .collect();
    assert!(
        versions
            .iter()
            .all(|v| *v == versions[0] && v.ends_with(" v")),
        "{versions:?}"
    );
    // Every member runs its node agent; every member lists all three nodes.
    for m in &members {
        let nodes = m.kubectl_ok(KUBECTL, &["get", "nodes", "-o", "name"]);
        let mut nodes: Vec<&str> = nodes.lines().collect();
        nodes.sort();
        assert_eq!(nodes, ["node/a", "node/b", "node/c"]);
    }
    // A wrong token is refused: the joiner exits with a clear error.
    let mut wrong = members[0].join_token();
    wrong.replace_range(wrong.len() - 4.., "0000");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--node-name",
            "x",
            "--join",
            &members[0].api_addr(),
            "--token",
            &wrong,
        ])
        .arg("--data-dir")
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn client(server: &Server) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    config.read_timeout = Some(Duration::from_secs(6));
    kube::Client::try_from(config).expect("client")
}

fn config_map(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm
}

#[test]
fn killing_the_leader_loses_no_acknowledged_write() {
    let mut members = three_members();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let clients: Vec<kube::Client> = runtime.block_on(async {
        let mut clients = Vec::new();
        for m in &members {
            clients.push(client(m).await);
        }
        clients
    });
    // Writers: each creates uniquely named ConfigMaps, trying member after member until one
    // acknowledges; every acknowledged name is recorded with the time it was acknowledged.
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (clients, acked, stop) = (clients.clone(), acked.clone(), stop.clone());
            runtime.spawn(async move {
                let mut n = 0;
                let mut target = w;
                // Bounded in count and paced, so the writers outlast the kills.
                while !stop.load(Ordering::Relaxed) && n < 20_000 {
                    let name = format!("w{w}-{n}");
                    let api: Api<ConfigMap> =
                        Api::namespaced(clients[target % clients.len()].clone(), "default");
                    let attempt = tokio::time::timeout(
                        Duration::from_secs(10),
                        api.create(&PostParams::default(), &config_map(&name)),
                    )
                    .await;
                    let Ok(attempt) = attempt else {
                        eprintln!("writer {w} via member {}: no answer in 10 s", target % 3);
                        target += 1;
                        continue;
                    };
                    match attempt {
                        Ok(_) => {
                            acked.lock().unwrap().push((name, Instant::now()));
                            n += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        // A retry of a write that did commit before its answer was lost.
                        Err(kube::Error::Api(e)) if e.code == 409 => n += 1,
                        Err(e) => {
                            eprintln!("writer {w} via member {}: {e}", target % 3);
                            target += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect();

    let mut gaps = Vec::new();
    for round in 0..5 {
        common::wait_for("writes to flow", Duration::from_secs(30), || {
            (acked.lock().unwrap().len() > (round + 1) * 20).then_some(())
        });
        let l = common::leader(&members);
        let killed = Instant::now();
        members[l].kill9();
        let resumed = common::wait_for(
            "a write acknowledged after the kill",
            Duration::from_secs(30),
            || {
                acked
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .find(|(_, at)| *at > killed)
                    .map(|(_, at)| *at)
            },
        );
        gaps.push(resumed - killed);
        eprintln!(
            "round {round}: killed member {l}, writes resumed after {:?}",
            resumed - killed
        );
        members[l].spawn();
    }
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for w in writers {
            w.await.unwrap();
        }
    });
    for (round, gap) in gaps.iter().enumerate() {
        assert!(
            *gap < Duration::from_secs(3),
            "round {round}: writes resumed {gap:?} after the kill"
        );
    }

    // Every member has every acknowledged write, each exactly once, at the same revision.
    let acked: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    let views: Vec<BTreeMap<String, String>> = runtime.block_on(async {
        let mut views = Vec::new();
        for m in &members {
            let api: Api<ConfigMap> = Api::namespaced(client(m).await, "default");
            let list = api.list(&ListParams::default()).await.expect("list");
            views.push(
                list.items
                    .into_iter()
                    .filter_map(|c| Some((c.metadata.name?, c.metadata.resource_version?)))
                    .collect(),
            );
        }
        views
    });
    for name in &acked {
        assert!(
            views[0].contains_key(name),
            "acknowledged write {name} is missing"
        );
    }
    assert!(views.iter().all(|v| *v == views[0]), "members disagree");
}
