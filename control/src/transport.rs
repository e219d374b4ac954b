//! The links between control-plane members: raft messages over QUIC (quinn), with mutual
//! TLS against the cluster CA.
//!
//! Both ends must present a certificate signed by the cluster CA, so a peer without one is
//! refused during the handshake, before any raft message is read. Messages to a peer are
//! queued and written, as length-prefixed protobuf frames, to one long-lived unidirectional
//! stream per link, so they arrive in order; whatever the queue holds when the link is free
//! goes out in one write. A snapshot message travels alone on its own stream, its data in
//! chunks, so a large snapshot never holds up heartbeats and votes. Sending
//! never blocks the raft thread; a message that cannot be delivered is dropped, which raft
//! tolerates (it retransmits).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use protobuf::Message as _;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use crate::pki::{CertPair, MEMBER_NAME};

const ALPN: &[u8] = b"wkube-raft/1";
/// Messages taken from a peer's queue into one stream.
const MAX_BATCH: usize = 512;
/// The largest message frame accepted (raft entries are bounded by the API's 3 MiB bodies).
const MAX_FRAME: usize = 64 << 20;
/// A snapshot's data travels in chunks of at most this size.
const CHUNK: usize = 1 << 20;
/// Pause after a failed connection attempt, so an unreachable peer costs little.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// How long a silent link lives: raft heartbeats keep a healthy one busy.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("TLS configuration for member links: {0}")]
    Tls(String),
    #[error("cannot listen for members on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connecting to member {id} at {addr}: {message}")]
    Connect {
        id: u64,
        addr: SocketAddr,
        message: String,
    },
    #[error("link to a member broke: {0}")]
    Link(String),
    #[error("a member sent a malformed frame: {0}")]
    Frame(String),
}

/// Where what arrives from other members goes (the raft thread's queue).
pub trait Inbound: Send + Sync + 'static {
    fn message(&self, message: Message);
    /// Whether a snapshot sent to `to` arrived whole: raft must be told either way.
    fn snapshot_sent(&self, to: u64, delivered: bool);
    /// A member told this one that it has been removed from the cluster.
    fn removed(&self);
}

/// A frame length no message has: the stream carries the "you were removed" notice instead.
const REMOVED_NOTICE: u32 = u32::MAX;

pub struct Transport {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    inbound: Arc<dyn Inbound>,
    peers: Mutex<HashMap<u64, Peer>>,
    /// Links are tokio tasks, but peers are set from the raft thread.
    runtime: tokio::runtime::Handle,
}

struct Peer {
    addr: SocketAddr,
    queue: mpsc::UnboundedSender<Message>,
}

impl Transport {
    /// Listens on `addr` for other members and delivers what they send to `inbound`. Must be
    /// called within a tokio runtime, which then runs the links.
    pub fn bind(
        addr: SocketAddr,
        ca: &CertPair,
        member: &CertPair,
        inbound: Arc<dyn Inbound>,
    ) -> Result<Arc<Self>, TransportError> {
        let (server, client) = tls(ca, member)?;
        let mut endpoint = quinn::Endpoint::server(server, addr)
            .map_err(|source| TransportError::Bind { addr, source })?;
        endpoint.set_default_client_config(client.clone());
        let transport = Arc::new(Transport {
            endpoint: endpoint.clone(),
            client,
            inbound: inbound.clone(),
            peers: Mutex::default(),
            runtime: tokio::runtime::Handle::current(),
        });
        tokio::spawn(accept_loop(endpoint, Arc::downgrade(&transport), inbound));
        Ok(transport)
    }

    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.endpoint
            .local_addr()
            .map_err(|e| TransportError::Link(e.to_string()))
    }

    /// Adds or moves a peer; its queue starts draining at once.
    pub fn set_peer(&self, id: u64, addr: SocketAddr) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if peers.get(&id).is_some_and(|p| p.addr == addr) {
            return;
        }
        let (queue, rx) = mpsc::unbounded_channel();
        let link = Link {
            id,
            addr,
            endpoint: self.endpoint.clone(),
            client: self.client.clone(),
            inbound: self.inbound.clone(),
            connection: None,
            stream: None,
        };
        self.runtime.spawn(link.run(rx));
        // Replacing the entry drops the old queue, which ends the old link's task.
        peers.insert(id, Peer { addr, queue });
    }

    /// Links to a member where it last dialed in from: how a joining member learns where the
    /// leader is, and how everyone learns that a restarted member has moved.
    fn learn_peer(&self, id: u64, addr: SocketAddr) {
        self.set_peer(id, addr);
    }

    /// Tells a member that was removed (and has not noticed: raft stops talking to a removed
    /// member, so it may never see its removal committed) to stop.
    pub fn tell_removed(&self, id: u64) {
        let Some(addr) = self
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|p| p.addr)
        else {
            return;
        };
        let (endpoint, client) = (self.endpoint.clone(), self.client.clone());
        self.runtime.spawn(async move {
            let notice = async {
                let connection = endpoint
                    .connect_with(client, addr, MEMBER_NAME)
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())?;
                let mut stream = connection.open_uni().await.map_err(|e| e.to_string())?;
                stream
                    .write_all(&REMOVED_NOTICE.to_be_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                stream.finish().map_err(|e| e.to_string())?;
                stream.stopped().await.map_err(|e| e.to_string()).map(drop)
            };
            if let Err(e) = notice.await {
                tracing::debug!(member = id, error = %e, "removal notice not delivered");
            }
        });
    }

    /// Drops the links to peers `keep` says no to (members that left).
    pub fn retain_peers(&self, keep: impl Fn(u64) -> bool) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.retain(|id, _| keep(*id));
    }

    /// Queues messages for their peers; never blocks. Messages to unknown peers are dropped.
    pub fn send(&self, messages: Vec<Message>) {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        for message in messages {
            match peers.get(&message.to) {
                Some(peer) => {
                    let _ = peer.queue.send(message);
                }
                None => tracing::debug!(
                    to = message.to,
                    "raft message for an unknown member dropped"
                ),
            }
        }
    }

    /// Closes every link and the listener.
    pub fn close(&self) {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.endpoint.close(0u32.into(), b"member stopping");
    }
}

fn tls(
    ca: &CertPair,
    member: &CertPair,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TransportError> {
    let err = |e: &dyn std::fmt::Display| TransportError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca.cert_chain().map_err(|e| err(&e))? {
        roots.add(cert).map_err(|e| err(&e))?;
    }
    let roots = Arc::new(roots);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|e| err(&e))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            member.cert_chain().map_err(|e| err(&e))?,
            member.private_key().map_err(|e| err(&e))?,
        )
        .map_err(|e| err(&e))?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(&e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            member.cert_chain().map_err(|e| err(&e))?,
            member.private_key().map_err(|e| err(&e))?,
        )
        .map_err(|e| err(&e))?;
    client.alpn_protocols = vec![ALPN.to_vec()];

    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().map_err(|e| err(&e))?));
    transport.keep_alive_interval(Some(IDLE_TIMEOUT / 3));
    let transport = Arc::new(transport);
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(server).map_err(|e| err(&e))?,
    ));
    server.transport_config(transport.clone());
    let mut client = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(client).map_err(|e| err(&e))?,
    ));
    client.transport_config(transport);
    Ok((server, client))
}

/// The sending side of the link to one peer.
struct Link {
    id: u64,
    addr: SocketAddr,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    inbound: Arc<dyn Inbound>,
    connection: Option<quinn::Connection>,
    /// The ordered stream for everything but snapshots.
    stream: Option<quinn::SendStream>,
}

impl Link {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Message>) {
        while let Some(first) = queue.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.deliver(batch).await {
                tracing::debug!(peer = self.id, error = %e, "raft messages dropped");
                self.connection = None;
                self.stream = None;
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        }
    }

    async fn deliver(&mut self, batch: Vec<Message>) -> Result<(), TransportError> {
        let link = |e: &dyn std::fmt::Display| TransportError::Link(e.to_string());
        let connection = self.connection().await?;
        let (snapshots, others): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|m| m.get_msg_type() == MessageType::MsgSnapshot);
        if !others.is_empty() {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => self
                    .stream
                    .insert(connection.open_uni().await.map_err(|e| link(&e))?),
            };
            stream
                .write_all(&frames(&others)?)
                .await
                .map_err(|e| link(&e))?;
        }
        for snapshot in snapshots {
            // Its own stream: a large snapshot does not delay the next heartbeats.
            let connection = connection.clone();
            let (id, inbound) = (self.id, self.inbound.clone());
            tokio::spawn(async move {
                let result = send_alone(&connection, &snapshot).await;
                if let Err(e) = &result {
                    tracing::warn!(peer = id, error = %e, "snapshot not delivered");
                }
                inbound.snapshot_sent(id, result.is_ok());
            });
        }
        Ok(())
    }

    async fn connection(&mut self) -> Result<quinn::Connection, TransportError> {
        if let Some(c) = self
            .connection
            .as_ref()
            .filter(|c| c.close_reason().is_none())
        {
            return Ok(c.clone());
        }
        let connect_err = |message: String| TransportError::Connect {
            id: self.id,
            addr: self.addr,
            message,
        };
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), self.addr, MEMBER_NAME)
            .map_err(|e| connect_err(e.to_string()))?;
        let connection = connecting.await.map_err(|e| connect_err(e.to_string()))?;
        self.connection = Some(connection.clone());
        self.stream = None;
        Ok(connection)
    }
}

fn frames(messages: &[Message]) -> Result<Vec<u8>, TransportError> {
    let mut frames = Vec::new();
    for message in messages {
        let bytes = message
            .write_to_bytes()
            .map_err(|e| TransportError::Frame(e.to_string()))?;
        let len = u32::try_from(bytes.len()).map_err(|e| TransportError::Frame(e.to_string()))?;
        frames.extend_from_slice(&len.to_be_bytes());
        frames.extend_from_slice(&bytes);
    }
    Ok(frames)
}

/// Sends `message` on a stream of its own. A snapshot's data follows its message in chunks
/// of at most `CHUNK` bytes, ended by an empty chunk, so no single frame has to hold it.
async fn send_alone(
    connection: &quinn::Connection,
    message: &Message,
) -> Result<(), TransportError> {
    let link = |e: &dyn std::fmt::Display| TransportError::Link(e.to_string());
    let mut stream = connection.open_uni().await.map_err(|e| link(&e))?;
    if message.get_msg_type() == MessageType::MsgSnapshot {
        let mut header = message.clone();
        header.mut_snapshot().set_data(Default::default());
        stream
            .write_all(&frames(&[header])?)
            .await
            .map_err(|e| link(&e))?;
        for chunk in message
            .get_snapshot()
            .get_data()
            .chunks(CHUNK)
            .chain([&[][..]])
        {
            stream
                .write_all(&(chunk.len() as u32).to_be_bytes())
                .await
                .map_err(|e| link(&e))?;
            stream.write_all(chunk).await.map_err(|e| link(&e))?;
        }
    } else {
        stream
            .write_all(&frames(std::slice::from_ref(message))?)
            .await
            .map_err(|e| link(&e))?;
    }
    stream.finish().map_err(|e| link(&e))?;
    // Done once the peer has read it all: for a snapshot, that is what raft is told.
    stream.stopped().await.map_err(|e| link(&e))?;
    Ok(())
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    transport: Weak<Transport>,
    inbound: Arc<dyn Inbound>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let (inbound, transport) = (inbound.clone(), transport.clone());
        tokio::spawn(async move {
            match incoming.await {
                Ok(connection) => receive(connection, transport, inbound).await,
                // A peer without a valid certificate ends here, in the handshake.
                Err(e) => tracing::warn!(error = %e, "member link refused"),
            }
        });
    }
}

async fn receive(
    connection: quinn::Connection,
    transport: Weak<Transport>,
    inbound: Arc<dyn Inbound>,
) {
    // Members dial from the endpoint they listen on, so this is where to reach the sender.
    let remote = connection.remote_address();
    while let Ok(stream) = connection.accept_uni().await {
        let (inbound, transport) = (inbound.clone(), transport.clone());
        tokio::spawn(async move {
            let learn = |from: u64| {
                if let Some(t) = transport.upgrade() {
                    t.learn_peer(from, remote);
                }
            };
            if let Err(e) = read_frames(stream, &*inbound, &learn).await {
                tracing::debug!(error = %e, "a member link's stream ended");
            }
        });
    }
}

/// Delivers each frame of `stream` as it arrives, until the stream ends.
async fn read_frames(
    mut stream: quinn::RecvStream,
    inbound: &dyn Inbound,
    learn: &(dyn Fn(u64) + Sync),
) -> Result<(), TransportError> {
    let link = |e: &dyn std::fmt::Display| TransportError::Link(e.to_string());
    loop {
        let mut len = [0u8; 4];
        match stream.read_exact(&mut len).await {
            Ok(()) => {}
            // The end of the stream between two frames is its normal end.
            Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(()),
            Err(e) => return Err(link(&e)),
        }
        let len = u32::from_be_bytes(len);
        if len == REMOVED_NOTICE {
            inbound.removed();
            return Ok(());
        }
        let len = len as usize;
        if len > MAX_FRAME {
            return Err(TransportError::Frame(format!(
                "frame of {len} bytes is over the limit"
            )));
        }
        let mut frame = vec![0u8; len];
        stream.read_exact(&mut frame).await.map_err(|e| link(&e))?;
        let mut message =
            Message::parse_from_bytes(&frame).map_err(|e| TransportError::Frame(e.to_string()))?;
        if message.get_msg_type() == MessageType::MsgSnapshot {
            let data = read_chunks(&mut stream).await?;
            message.mut_snapshot().set_data(data.into());
        }
        learn(message.from);
        inbound.message(message);
    }
}

/// A snapshot's data: chunks until an empty one.
async fn read_chunks(stream: &mut quinn::RecvStream) -> Result<Vec<u8>, TransportError> {
    let link = |e: &dyn std::fmt::Display| TransportError::Link(e.to_string());
    let mut data = Vec::new();
    loop {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.map_err(|e| link(&e))?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            return Ok(data);
        }
        if len > CHUNK {
            return Err(TransportError::Frame(format!(
                "snapshot chunk of {len} bytes is over the limit"
            )));
        }
        let start = data.len();
        data.resize(start + len, 0);
        stream
            .read_exact(&mut data[start..])
            .await
            .map_err(|e| link(&e))?;
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki;
    use std::time::Instant;

    fn ca() -> CertPair {
        let dir = tempfile::tempdir().unwrap();
        pki::ClusterPki::load_or_create(dir.path(), &["127.0.0.1".into()])
            .unwrap()
            .ca
    }

    #[derive(Default)]
    struct Collector {
        messages: Mutex<Vec<Message>>,
        snapshots: Mutex<Vec<(u64, bool)>>,
        removed: Mutex<bool>,
    }

    impl Inbound for Collector {
        fn message(&self, message: Message) {
            self.messages.lock().unwrap().push(message);
        }
        fn snapshot_sent(&self, to: u64, delivered: bool) {
            self.snapshots.lock().unwrap().push((to, delivered));
        }
        fn removed(&self) {
            *self.removed.lock().unwrap() = true;
        }
    }

    fn collector() -> (Arc<dyn Inbound>, Arc<Collector>) {
        let c = Arc::new(Collector::default());
        (c.clone(), c)
    }

    fn message(from: u64, to: u64, msg_type: MessageType, index: u64) -> Message {
        let mut m = Message {
            from,
            to,
            index,
            ..Default::default()
        };
        m.set_msg_type(msg_type);
        m
    }

    async fn wait_for(got: &Mutex<Vec<Message>>, n: usize) -> Vec<Message> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let messages = got.lock().unwrap().clone();
            if messages.len() >= n || Instant::now() > deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[tokio::test]
    async fn members_of_one_cluster_exchange_messages_in_order() {
        let ca = ca();
        let (inbound_a, got_a) = collector();
        let (inbound_b, got_b) = collector();
        let a = Transport::bind(
            loopback(),
            &ca,
            &pki::member_certificate(&ca).unwrap(),
            inbound_a,
        )
        .unwrap();
        let b = Transport::bind(
            loopback(),
            &ca,
            &pki::member_certificate(&ca).unwrap(),
            inbound_b,
        )
        .unwrap();
        a.set_peer(2, b.local_addr().unwrap());
        b.set_peer(1, a.local_addr().unwrap());

        // Sent one by one, so they go out in several writes.
        for i in 1..=100 {
            a.send(vec![message(1, 2, MessageType::MsgAppend, i)]);
        }
        let mut snapshot = message(1, 2, MessageType::MsgSnapshot, 0);
        // Larger than any frame may be: it arrives in chunks, whole and in order.
        let data: Vec<u8> = (0..MAX_FRAME + CHUNK + 7)
            .map(|i| (i % 251) as u8)
            .collect();
        snapshot.mut_snapshot().set_data(data.clone().into());
        a.send(vec![snapshot]);
        b.send(vec![message(2, 1, MessageType::MsgAppendResponse, 100)]);

        let at_b = wait_for(&got_b.messages, 101).await;
        let appends: Vec<u64> = at_b
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgAppend)
            .map(|m| m.index)
            .collect();
        assert_eq!(
            appends,
            (1..=100).collect::<Vec<_>>(),
            "one peer's messages keep their order"
        );
        let snapshot = at_b
            .iter()
            .find(|m| m.get_msg_type() == MessageType::MsgSnapshot)
            .expect("snapshot delivered");
        assert!(
            snapshot.get_snapshot().get_data()[..] == data[..],
            "the snapshot's data arrived intact"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while got_a.snapshots.lock().unwrap().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            *got_a.snapshots.lock().unwrap(),
            [(2, true)],
            "the sender learns it arrived"
        );
        assert_eq!(wait_for(&got_a.messages, 1).await[0].index, 100);
    }

    #[tokio::test]
    async fn a_peer_without_a_cluster_certificate_is_refused() {
        let ca = ca();
        let (inbound, got) = collector();
        let member = Transport::bind(
            loopback(),
            &ca,
            &pki::member_certificate(&ca).unwrap(),
            inbound,
        )
        .unwrap();
        let addr = member.local_addr().unwrap();
        // A stranger: a well-formed certificate from another CA; it trusts ours.
        let stranger = Transport::bind(
            loopback(),
            &ca,
            &pki::member_certificate(&self::ca()).unwrap(),
            Arc::new(Collector::default()),
        )
        .unwrap();
        let attempt = stranger
            .endpoint
            .connect_with(stranger.client.clone(), addr, MEMBER_NAME)
            .unwrap()
            .await;
        let refusal = match attempt {
            Err(e) => e.to_string(),
            // TLS 1.3 clients finish before the server checks their certificate: the
            // server then closes the connection without accepting any stream.
            Ok(connection) => {
                let _ = send_alone(&connection, &message(9, 1, MessageType::MsgHeartbeat, 0)).await;
                tokio::time::timeout(Duration::from_secs(10), connection.closed())
                    .await
                    .expect("closed by the member")
                    .to_string()
            }
        };
        assert!(
            refusal.contains("certificate") || refusal.contains("alert"),
            "{refusal}"
        );

        // A member's message still arrives, and it is the only one that did.
        let friend = Transport::bind(
            loopback(),
            &ca,
            &pki::member_certificate(&ca).unwrap(),
            Arc::new(Collector::default()),
        )
        .unwrap();
        friend.set_peer(1, addr);
        friend.send(vec![message(2, 1, MessageType::MsgHeartbeat, 0)]);
        let got = wait_for(&got.messages, 1).await;
        assert_eq!(got.iter().map(|m| m.from).collect::<Vec<_>>(), [2]);
    }
}
