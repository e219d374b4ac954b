//! Linearizability of the replicated API under faults: concurrent clients read, write and
//! compare-and-set (through resourceVersion preconditions) one ConfigMap through every
//! member, while the leader is killed and a member is cut off; the history they record is
//! then checked by `linearizability`.

mod common;
#[path = "common/linearizability.rs"]
mod linearizability;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

use common::{Partition, Server};
use linearizability::{is_linearizable, Call, Op, Outcome};

const REGISTER: &str = "register";

fn register(value: &str, resource_version: Option<String>) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(REGISTER.into());
    cm.metadata.resource_version = resource_version;
    cm.data = Some([("value".to_string(), value.to_string())].into());
    cm
}

fn value_of(cm: &ConfigMap) -> Option<String> {
    cm.data.as_ref().and_then(|d| d.get("value").cloned())
}

async fn client(server: &Server) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    config.read_timeout = Some(Duration::from_secs(8));
    // kube's default retry resends a request answered 503 or 504. A 504 means "may have
    // been applied": the resent compare-and-set then meets its own write and gets a 409,
    // which the history would record as a refused write that in fact took effect.
    config.default_retry = false;
    kube::Client::try_from(config).expect("client")
}

/// A small deterministic generator per client (xorshift), so a failing history can be replayed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

/// Whether a failed write certainly had no effect: it never reached a member (no
/// connection), or raft refused it at once for want of a leader (503). Everything else (a
/// timeout, a lost answer, a leader change) leaves the outcome unknown, which the checker
/// must then consider both ways; keeping those few makes the check tractable.
fn never_applied(e: &kube::Error) -> bool {
    if let kube::Error::Api(status) = e {
        return status.code == 503;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err
            .downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(|h| h.is_connect())
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// One client: `ops` operations on the register through random members.
async fn run_client(
    id: u64,
    apis: Vec<Api<ConfigMap>>,
    ops: usize,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<Op>>>,
) {
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (id + 1));
    let record = |call: Call, outcome: Outcome, invoked: Instant| {
        let returned = (outcome != Outcome::Unknown).then(Instant::now);
        history.lock().unwrap().push(Op {
            call,
            outcome,
            invoked,
            returned,
        });
    };
    for n in 0..ops {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let api = &apis[dice.roll(apis.len() as u64) as usize];
        let fresh = format!("c{id}-{n}");
        match dice.roll(3) {
            0 => {
                let invoked = Instant::now();
                let outcome = match api.get(REGISTER).await {
                    Ok(cm) => Outcome::Ok(value_of(&cm)),
                    Err(_) => Outcome::Unknown,
                };
                record(Call::Read, outcome, invoked);
            }
            1 => {
                let invoked = Instant::now();
                let outcome = match api
                    .replace(REGISTER, &PostParams::default(), &register(&fresh, None))
                    .await
                {
                    Ok(_) => Outcome::Ok(None),
                    Err(e) if never_applied(&e) => continue,
                    Err(_) => Outcome::Unknown,
                };
                record(Call::Write(fresh), outcome, invoked);
            }
            _ => {
                // Read, then set if unchanged since: the resourceVersion read is the condition.
                let invoked = Instant::now();
                let Ok(current) = api.get(REGISTER).await else {
                    record(Call::Read, Outcome::Unknown, invoked);
                    continue;
                };
                let expected = value_of(&current).expect("the register has a value");
                record(Call::Read, Outcome::Ok(Some(expected.clone())), invoked);
                let invoked = Instant::now();
                let update = register(&fresh, current.metadata.resource_version.clone());
                let outcome = match api.replace(REGISTER, &PostParams::default(), &update).await {
                    Ok(_) => Outcome::Ok(None),
                    Err(kube::Error::Api(e)) if e.code == 409 => Outcome::CasFailed,
                    Err(e) if never_applied(&e) => continue,
                    Err(_) => Outcome::Unknown,
                };
                record(
                    Call::Cas {
                        expected,
                        new: fresh,
                    },
                    outcome,
                    invoked,
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn the_register_history_is_linearizable_across_kills_and_a_partition() {
    let first = Server::start_member("a", None);
    let b = Server::start_member("b", Some(&first));
    let c = Server::start_member("c", Some(&first));
    let mut members = vec![first, b, c];
    members[0].kubectl_ok(
        "1.33",
        &[
            "create",
            "configmap",
            REGISTER,
            "--from-literal=value=initial",
        ],
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let apis: Vec<Api<ConfigMap>> = runtime.block_on(async {
        let mut apis = Vec::new();
        for m in &members {
            apis.push(Api::namespaced(client(m).await, "default"));
        }
        apis
    });
    let history: Arc<Mutex<Vec<Op>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|id| {
            runtime.spawn(run_client(
                id,
                apis.clone(),
                400,
                stop.clone(),
                history.clone(),
            ))
        })
        .collect();

    // Faults while the clients run: kill -9 of a member twice (restarted each time), then a
    // member cut off from the others for a while. Each lasts long enough for elections.
    let progress = |n: usize| {
        common::wait_for("some operations", Duration::from_secs(30), || {
            (history.lock().unwrap().len() > 40 * n).then_some(())
        })
    };
    for victim in [0, 1] {
        progress(victim + 1);
        members[victim].kill9();
        std::thread::sleep(Duration::from_millis(1500));
        members[victim].spawn();
    }
    progress(3);
    let partition = Partition::isolate(members[2].peer_port());
    std::thread::sleep(Duration::from_millis(2000));
    drop(partition);
    progress(4);
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for c in clients {
            c.await.unwrap();
        }
    });

    let history = history.lock().unwrap().clone();
    let known = history
        .iter()
        .filter(|o| o.outcome != Outcome::Unknown)
        .count();
    assert!(
        known > 100,
        "too few operations completed to check anything: {known}"
    );
    assert!(
        is_linearizable(&history, Some("initial".into())),
        "not linearizable: {history:#?}"
    );
}
