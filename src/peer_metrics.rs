//! Gathers what the other control-plane members' nodes measured, so that every member's
//! `metrics.k8s.io` answers for the whole cluster (metrics-server's scrape of every
//! kubelet). Each round asks every other member's [`NODE_USAGE`] endpoint, with the
//! cluster's admin certificate, and replaces what was known: a member that does not answer
//! within the round has its node and pods left out until it does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use control::api::metrics::{ClusterMetrics, Measurements, NODE_USAGE};
use control::pki::CertPair;
use control::store::Store;
use tokio::sync::watch;

use crate::join::{client, Credentials};

pub struct PeerMetrics {
    pub store: Store,
    /// The cluster CA's certificate, and the admin identity members present to each other.
    pub ca_pem: String,
    pub admin: CertPair,
    pub metrics: Arc<ClusterMetrics>,
    pub every: Duration,
}

impl PeerMetrics {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut clients: HashMap<String, kube::Client> = HashMap::new();
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !*shutdown.borrow() {
            tokio::select! {
                _ = ticks.tick() => {
                    let gathered = self.gather(&mut clients).await;
                    self.metrics.set_others(gathered);
                }
                changed = shutdown.changed() => if changed.is_err() { return },
            }
        }
    }

    async fn gather(&self, clients: &mut HashMap<String, kube::Client>) -> Measurements {
        let mut all = Measurements::default();
        let Ok(status) = self.store.status().await else {
            return all;
        };
        let me = self.store.member_id();
        let urls = status
            .members
            .into_iter()
            .filter(|m| m.member.id != me && !m.member.api_url.is_empty())
            .map(|m| m.member.api_url);
        let mut asked = Vec::new();
        for url in urls {
            let client = match clients.get(&url) {
                Some(c) => c.clone(),
                None => match client(
                    &url,
                    Some(&self.ca_pem),
                    Credentials::Certificate(&self.admin),
                )
                .await
                {
                    Ok(c) => clients.entry(url.clone()).or_insert(c).clone(),
                    Err(e) => {
                        tracing::warn!(%url, error = %e, "no client for a member's resource usage");
                        continue;
                    }
                },
            };
            asked.push(async move {
                let request = http::Request::get(NODE_USAGE).body(Vec::new());
                let answer = match request {
                    Ok(r) => tokio::time::timeout(self.every, client.request::<Measurements>(r))
                        .await
                        .map_err(|_| "no answer in time".to_string())
                        .and_then(|r| r.map_err(|e| e.to_string())),
                    Err(e) => Err(e.to_string()),
                };
                answer
                    .inspect_err(|e| tracing::debug!(%url, error = %e, "a member's resource usage"))
            });
        }
        for measured in futures::future::join_all(asked).await.into_iter().flatten() {
            all.nodes.extend(measured.nodes);
            all.pods.extend(measured.pods);
        }
        all
    }
}
