//! The raft driver: one thread owns the `RawNode` and runs the Ready loop in the order
//! raft-rs documents (its `five_mem_node` example); everything else reaches it through a
//! channel. Proposals that arrive together are handled in one Ready, so they share one
//! sled flush (group commit).
//!
//! Every member applies every committed entry, and each resolves the proposals it made
//! itself when it applies them: a follower's proposal is forwarded to the leader by raft,
//! and its caller is answered once the follower has applied it too (read-your-writes on
//! every member).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, Message, Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole, Storage as _};
use serde_json::Value;
use tokio::sync::oneshot;

use super::commit_record::CommitRecord;
use super::members::Member;
use super::raft_storage::SledStorage;
use super::state::{Applying, Op, StateMachine};
use super::{ClusterStatus, LogRetention, MemberStatus, StoreError};
use crate::transport::Transport;

/// With `election_tick` 10 and `heartbeat_tick` 3 (see `Store::open_with`): heartbeats every
/// 150 ms, an election after 0.5 to 1 s without a leader.
const TICK: Duration = Duration::from_millis(50);
/// Proposals taken from the channel per Ready, bounding one batch's latency.
const MAX_BATCH: usize = 1024;
/// How long a read request may go unanswered before it is asked again.
const READ_RETRY: Duration = Duration::from_millis(200);
/// A learner this close to the leader's commit index is promoted to voter.
const PROMOTE_LAG: u64 = 50;

/// The stored object, shared with the watch event; the caller clones it if it must, on its
/// own thread rather than the raft thread.
pub type Reply = oneshot::Sender<Result<Arc<Value>, StoreError>>;
pub type Done = oneshot::Sender<Result<(), StoreError>>;

pub enum Request {
    /// `op` is an [`Op`] as JSON, encoded by the caller so the raft thread does not.
    Propose {
        id: u128,
        op: Vec<u8>,
        reply: Reply,
    },
    /// Answers once this member has applied everything committed when it was asked.
    ReadIndex {
        id: u128,
        reply: Done,
    },
    ChangeMembers {
        id: u128,
        change: MembershipChange,
        reply: Done,
    },
    Status {
        reply: oneshot::Sender<Result<ClusterStatus, StoreError>>,
    },
    /// A message from another member.
    Step(Message),
    SnapshotSent {
        to: u64,
        delivered: bool,
    },
    /// Every `Store` handle is gone.
    Shutdown,
    /// Another member says this one was removed from the cluster.
    Removed,
}

pub enum MembershipChange {
    Add(Member),
    /// New addresses for an existing member (it restarted elsewhere).
    Update(Member),
    Remove(u64),
}

/// A caller waiting for its entry to be applied.
pub enum Waiter {
    Write(Reply),
    Done(Done),
}

impl Waiter {
    fn is_closed(&self) -> bool {
        match self {
            Waiter::Write(r) => r.is_closed(),
            Waiter::Done(r) => r.is_closed(),
        }
    }

    fn fail(self, e: StoreError) {
        match self {
            Waiter::Write(r) => drop(r.send(Err(e))),
            Waiter::Done(r) => drop(r.send(Err(e))),
        }
    }
}

/// Entries being applied together, and the answers owed once they are written.
struct Group {
    applying: Applying,
    replies: Vec<(Waiter, Result<Arc<Value>, StoreError>)>,
}

impl Group {
    fn new() -> Self {
        Group {
            applying: Applying::default(),
            replies: Vec::new(),
        }
    }
}

pub struct RaftDriver {
    pub node: RawNode<SledStorage>,
    pub storage: SledStorage,
    pub db: sled::Db,
    pub state: StateMachine,
    pub requests: Receiver<Request>,
    pub applied: Arc<AtomicU64>,
    pub retention: LogRetention,
    pub transport: Option<Arc<Transport>>,
    pub pending: HashMap<u128, Waiter>,
    /// The leader as of the last Ready (0: none known).
    pub leader: u64,
    /// Whether this member leads, for the controllers that run on the leader only.
    pub leading: tokio::sync::watch::Sender<bool>,
    /// The commit index sled has made durable, and the record of it beside sled.
    pub durable_commit: u64,
    pub commit_record: CommitRecord,
    /// Read requests sent to the leader, by id.
    pub reads_asked: HashMap<u128, (Done, Instant)>,
    /// Reads whose index is known, waiting for this member to apply up to it.
    pub reads_ready: Vec<(u64, Done)>,
}

impl RaftDriver {
    /// Runs until every `Store` handle is dropped, or a storage failure makes this member
    /// unsafe to continue (then the error is returned and all waiters are failed).
    pub fn run(mut self) -> Result<(), StoreError> {
        let result = self.run_loop();
        for (_, waiter) in self.pending.drain() {
            waiter.fail(StoreError::Unavailable);
        }
        if let Some(t) = &self.transport {
            t.close();
        }
        result
    }

    fn run_loop(&mut self) -> Result<(), StoreError> {
        let mut last_tick = Instant::now();
        loop {
            let wait = TICK.saturating_sub(last_tick.elapsed());
            match self.requests.recv_timeout(wait) {
                Ok(req) => {
                    if !self.handle(req)? {
                        return Ok(());
                    }
                    for _ in 0..MAX_BATCH {
                        match self.requests.try_recv() {
                            Ok(req) => {
                                if !self.handle(req)? {
                                    return Ok(());
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if last_tick.elapsed() >= TICK {
                self.node.tick();
                self.on_tick()?;
                last_tick = Instant::now();
            }
            self.on_ready()?;
        }
    }

    /// Handles one request; `false` means stop.
    fn handle(&mut self, req: Request) -> Result<bool, StoreError> {
        match req {
            Request::Propose { id, op, reply } => {
                match self.node.propose(id.to_be_bytes().to_vec(), op) {
                    Ok(()) => {
                        self.pending.insert(id, Waiter::Write(reply));
                    }
                    Err(e) => drop(reply.send(Err(proposal_error(e)))),
                }
            }
            Request::ReadIndex { id, reply } => {
                self.node.read_index(id.to_be_bytes().to_vec());
                self.reads_asked.insert(id, (reply, Instant::now()));
            }
            Request::ChangeMembers { reply, .. } if self.node.raft.has_pending_conf() => {
                // raft-rs would turn a second pending change into an empty entry, silently.
                let _ = reply.send(Err(StoreError::Busy));
            }
            Request::ChangeMembers { id, change, reply } => {
                let change = match self.conf_change_for(change) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return Ok(true);
                    }
                };
                match self
                    .node
                    .propose_conf_change(id.to_be_bytes().to_vec(), change)
                {
                    Ok(()) => {
                        self.pending.insert(id, Waiter::Done(reply));
                    }
                    Err(e) => drop(reply.send(Err(proposal_error(e)))),
                }
            }
            Request::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Request::Step(message) if self.state.was_removed(message.from)? => {
                // A removed member that never saw its removal committed still campaigns.
                if let Some(t) = &self.transport {
                    t.tell_removed(message.from);
                }
            }
            Request::Step(message) => {
                if let Err(e) = self.node.step(message) {
                    tracing::debug!(error = %e, "raft message ignored");
                }
            }
            Request::SnapshotSent { to, delivered } => {
                let status = if delivered {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.node.report_snapshot(to, status);
                if !delivered {
                    self.node.report_unreachable(to);
                }
            }
            Request::Shutdown => return Ok(false),
            Request::Removed => return Err(StoreError::Removed),
        }
        Ok(true)
    }

    fn on_tick(&mut self) -> Result<(), StoreError> {
        self.commit_record.maybe_write(self.durable_commit)?;
        // Callers that gave up (timed out) no longer need an answer.
        self.pending.retain(|_, w| !w.is_closed());
        self.reads_asked.retain(|_, (r, _)| !r.is_closed());
        self.ask_reads_again();
        if self.node.raft.state == StateRole::Leader {
            self.promote_learners();
        }
        Ok(())
    }

    /// raft-rs drops a read request when no leader is known, or when the leader has not yet
    /// committed an entry of its term (just after an election); such reads are asked again
    /// until they are answered or their caller gives up.
    fn ask_reads_again(&mut self) {
        let now = Instant::now();
        for (id, (_, asked)) in self.reads_asked.iter_mut() {
            if now.duration_since(*asked) >= READ_RETRY {
                self.node.read_index(id.to_be_bytes().to_vec());
                *asked = now;
            }
        }
    }

    /// The leader turns a learner that has caught up into a voter, one at a time (raft
    /// allows one pending configuration change).
    fn promote_learners(&mut self) {
        let raft = &self.node.raft;
        if raft.has_pending_conf() {
            return;
        }
        let committed = raft.raft_log.committed;
        let ready = raft.prs().conf().learners().iter().copied().find(|id| {
            raft.prs()
                .get(*id)
                // matched > 0: it has answered at all (its first catch-up is a snapshot).
                .is_some_and(|p| p.matched > 0 && p.matched + PROMOTE_LAG >= committed)
        });
        if let Some(learner) = ready {
            let change = conf_change(ConfChangeType::AddNode, learner, Vec::new());
            if let Err(e) = self.node.propose_conf_change(Vec::new(), change) {
                tracing::debug!(learner, error = %e, "promotion not proposed");
            }
        }
    }

    fn on_ready(&mut self) -> Result<(), StoreError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        if let Some(soft) = ready.ss() {
            self.on_leader(soft.leader_id);
        }

        // 1. Send out the messages that do not depend on persistence (leader appends).
        self.send(ready.take_messages());

        // 2. Install the snapshot, if any, before any committed entries that follow it:
        //    the state first (it records the snapshot too, see `StateMachine::restore`).
        // Only new entries, a snapshot or a new term or vote must be durable before the
        // messages that depend on them leave (raft-rs' `must_sync`, etcd's `MustSync`). A
        // commit index alone is not flushed: one lost in a crash is learned again from the
        // leader, and `Store::open` raises it to what the state has applied. Leaving it out
        // halves the flushes of a busy follower.
        let must_sync = ready.must_sync();
        if *ready.snapshot() != Snapshot::default() {
            let snapshot = ready.snapshot();
            self.state
                .restore(snapshot.get_metadata(), snapshot.get_data())?;
            tracing::info!(
                index = snapshot.get_metadata().index,
                bytes = snapshot.get_data().len(),
                "installed a snapshot from the leader"
            );
            self.storage.apply_snapshot_meta(snapshot.get_metadata())?;
            self.applied
                .store(snapshot.get_metadata().index, Ordering::Release);
            self.connect_members()?;
        }

        // Reads whose index the leader confirmed.
        for read in ready.take_read_states() {
            if let Some((reply, _)) =
                proposal_id(&read.request_ctx).and_then(|id| self.reads_asked.remove(&id))
            {
                self.reads_ready.push((read.index, reply));
            }
        }

        // 3. Apply committed entries.
        self.apply_committed(ready.take_committed_entries())?;

        // 4. Append new entries to the log, and 5. persist the hard state; both are made
        //    durable with one flush before any message that depends on them leaves.
        self.storage.append(ready.entries())?;
        if let Some(hs) = ready.hs() {
            self.storage.set_hard_state(hs)?;
        }
        if must_sync {
            // Everything written before the flush is durable after it, this commit index too.
            let commit = self.storage.hard_state()?.commit;
            self.db.flush()?;
            self.durable_commit = commit;
        }

        // 6. Send the messages that may only leave once the log is durable (votes, acks).
        self.send(ready.take_persisted_messages());

        // 7. Advance, then handle what became committed by our own persistence.
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.storage.set_commit(commit)?;
        }
        self.send(light.take_messages());
        self.apply_committed(light.take_committed_entries())?;
        self.node.advance_apply();
        self.answer_reads();
        self.compact_log()
    }

    /// A proposal forwarded to a leader that is gone is lost, or commits under the next one;
    /// which, nobody can tell yet. Its caller gets an error now (a write that turns out to
    /// have been applied then shows up as AlreadyExists or a newer version when retried) rather
    /// than waiting for the timeout, so clients move on at the speed of the election.
    fn on_leader(&mut self, leader: u64) {
        if leader == self.leader {
            return;
        }
        self.leader = leader;
        self.leading.send_replace(leader == self.node.raft.id);
        for (_, waiter) in self.pending.drain() {
            waiter.fail(StoreError::LeaderChanged);
        }
    }

    fn send(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        match &self.transport {
            Some(t) => t.send(messages),
            None => tracing::warn!("raft messages for other members, but no member links"),
        }
    }

    fn answer_reads(&mut self) {
        let applied = self.applied.load(Ordering::Acquire);
        let (done, waiting): (Vec<_>, Vec<_>) = self
            .reads_ready
            .drain(..)
            .partition(|(index, _)| *index <= applied);
        self.reads_ready = waiting;
        for (_, reply) in done {
            let _ = reply.send(Ok(()));
        }
    }

    /// Cuts the log per the retention policy; the cut is made durable by the next flush
    /// (losing it in a crash only means compacting again).
    fn compact_log(&mut self) -> Result<(), StoreError> {
        let applied = self.applied.load(Ordering::Acquire);
        let first = self.storage.first_index()?;
        let LogRetention {
            keep,
            compact_every,
        } = self.retention;
        if applied >= first + keep + compact_every {
            self.storage.compact(applied - keep)?;
        }
        self.storage.trim_some()?;
        Ok(())
    }

    /// Applies committed entries as one group (see `state::Applying`); a configuration
    /// change ends the group before it, because it acts on raft at once.
    fn apply_committed(&mut self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let mut group = Group::new();
        for entry in entries {
            let index = entry.index;
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {
                    self.state.apply_noop(&mut group.applying, index);
                }
                EntryType::EntryNormal => {
                    let op: Op = serde_json::from_slice(&entry.data)?;
                    let outcome = self.state.apply(&mut group.applying, index, op)?;
                    if let Some(waiter) = self.waiter(&entry) {
                        group.replies.push((waiter, outcome));
                    }
                }
                // wkube proposes only V2 changes, and raft-rs' own are V2 as well.
                EntryType::EntryConfChange => {
                    return Err(StoreError::Corrupt(format!(
                        "entry {index} is a v1 configuration change"
                    )));
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&entry.data)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    self.finish(std::mem::replace(&mut group, Group::new()))?;
                    self.apply_conf_change(index, cc)?;
                    self.applied.store(index, Ordering::Release);
                    self.resolve_done(&entry);
                }
            }
        }
        self.finish(group)
    }

    /// Writes a group, then answers its proposers: only now can they read what they wrote.
    fn finish(&mut self, group: Group) -> Result<(), StoreError> {
        let applied = self.state.commit(group.applying)?;
        if applied > 0 {
            self.applied.store(applied, Ordering::Release);
        }
        for (waiter, outcome) in group.replies {
            match waiter {
                Waiter::Write(reply) => drop(reply.send(outcome)),
                other => other.fail(StoreError::Raft("proposal id reused".into())),
            }
        }
        Ok(())
    }

    fn waiter(&mut self, entry: &Entry) -> Option<Waiter> {
        proposal_id(&entry.context).and_then(|id| self.pending.remove(&id))
    }

    fn resolve_done(&mut self, entry: &Entry) {
        if let Some(Waiter::Done(reply)) = self.waiter(entry) {
            let _ = reply.send(Ok(()));
        }
    }

    /// The raft change for a membership change, refusing one that would leave no voter.
    fn conf_change_for(&self, change: MembershipChange) -> Result<ConfChangeV2, StoreError> {
        match change {
            MembershipChange::Add(member) => Ok(conf_change(
                ConfChangeType::AddLearnerNode,
                member.id,
                serde_json::to_vec(&member)?,
            )),
            MembershipChange::Update(member) => {
                // Adding a member as what it already is changes no configuration; the
                // entry's context carries its new record to every member.
                let conf = self.node.raft.prs().conf();
                let change = if conf.voters().ids().iter().any(|v| v == member.id) {
                    ConfChangeType::AddNode
                } else if conf.learners().contains(&member.id) {
                    ConfChangeType::AddLearnerNode
                } else {
                    return Err(StoreError::Membership(format!(
                        "{} is not a member",
                        member.id
                    )));
                };
                Ok(conf_change(change, member.id, serde_json::to_vec(&member)?))
            }
            MembershipChange::Remove(id) => {
                let conf = self.node.raft.prs().conf();
                let voters: Vec<u64> = conf.voters().ids().iter().collect();
                if !voters.contains(&id) && !conf.learners().contains(&id) {
                    return Err(StoreError::Membership(format!("{id} is not a member")));
                }
                if voters == [id] {
                    return Err(StoreError::Membership(format!("{id} is the last voter")));
                }
                Ok(conf_change(ConfChangeType::RemoveNode, id, Vec::new()))
            }
        }
    }

    fn apply_conf_change(&mut self, index: u64, cc: ConfChangeV2) -> Result<(), StoreError> {
        let cs = self.node.apply_conf_change(&cc)?;
        self.storage.set_conf_state(&cs)?;
        let joined: Option<Member> = if cc.context.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&cc.context)?)
        };
        let left = cc
            .get_changes()
            .iter()
            .find(|c| c.get_change_type() == ConfChangeType::RemoveNode)
            .map(|c| c.node_id);
        self.state.apply_membership(index, joined.as_ref(), left)?;
        if left == Some(self.node.raft.id) {
            // The rest of the cluster has committed this member's removal; it stops here.
            return Err(StoreError::Removed);
        }
        self.connect_members()
    }

    /// Points the member links at every member the state knows of. A member whose state
    /// knows none yet (it is joining) keeps the links it learned from who contacted it.
    pub fn connect_members(&self) -> Result<(), StoreError> {
        let Some(transport) = &self.transport else {
            return Ok(());
        };
        let me = self.node.raft.id;
        let members = self.state.members()?;
        if members.is_empty() {
            return Ok(());
        }
        for m in members.iter().filter(|m| m.id != me) {
            transport.set_peer(m.id, m.peer_addr);
        }
        transport.retain_peers(|id| members.iter().any(|m| m.id == id));
        Ok(())
    }

    fn status(&self) -> Result<ClusterStatus, StoreError> {
        let raft = &self.node.raft;
        let conf = raft.prs().conf();
        let members = self
            .state
            .members()?
            .into_iter()
            .map(|m| MemberStatus {
                voter: conf.voters().contains(m.id),
                // Only the leader tracks how far each member's log matches its own.
                matched: (raft.state == StateRole::Leader)
                    .then(|| raft.prs().get(m.id).map(|p| p.matched))
                    .flatten(),
                member: m,
            })
            .collect();
        Ok(ClusterStatus {
            id: raft.id,
            leader: raft.leader_id,
            role: format!("{:?}", raft.state),
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: self.applied.load(Ordering::Acquire),
            first_index: self.storage.first_index()?,
            members,
        })
    }
}

fn conf_change(change_type: ConfChangeType, node_id: u64, context: Vec<u8>) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(change_type);
    single.node_id = node_id;
    let mut cc = ConfChangeV2::default();
    cc.set_changes(vec![single].into());
    cc.context = context.into();
    cc
}

fn proposal_error(e: raft::Error) -> StoreError {
    match e {
        // No leader known (an election is under way, or this member is cut off).
        raft::Error::ProposalDropped => StoreError::Unavailable,
        other => StoreError::Raft(other.to_string()),
    }
}

fn proposal_id(context: &[u8]) -> Option<u128> {
    Some(u128::from_be_bytes(context.try_into().ok()?))
}
