//! The raft driver: one thread owns the `RawNode` and runs the Ready loop in the order
//! raft-rs documents (its `five_mem_node` example); everything else reaches it through a
//! channel. Proposals that arrive together are handled in one Ready, so they share one
//! sled flush (group commit).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, EntryType, Message, Snapshot};
use raft::{RawNode, StateRole, Storage as _};
use serde_json::Value;
use tokio::sync::oneshot;

use super::raft_storage::SledStorage;
use super::state::{Op, StateMachine};
use super::{LogRetention, StoreError};

const TICK: Duration = Duration::from_millis(100);
/// Proposals taken from the channel per Ready, bounding one batch's latency.
const MAX_BATCH: usize = 1024;

pub type Reply = oneshot::Sender<Result<Value, StoreError>>;

pub enum Request {
    Propose { id: u128, op: Op, reply: Reply },
}

pub struct RaftDriver {
    pub node: RawNode<SledStorage>,
    pub storage: SledStorage,
    pub db: sled::Db,
    pub state: StateMachine,
    pub requests: Receiver<Request>,
    pub pending: HashMap<u128, Reply>,
    pub applied: Arc<AtomicU64>,
    pub retention: LogRetention,
}

impl RaftDriver {
    /// Runs until every `Store` handle is dropped, or a storage failure makes this member
    /// unsafe to continue (then the error is returned and all waiters are failed).
    pub fn run(mut self) -> Result<(), StoreError> {
        let result = self.run_loop();
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(StoreError::Unavailable));
        }
        result
    }

    fn run_loop(&mut self) -> Result<(), StoreError> {
        let mut last_tick = Instant::now();
        loop {
            let wait = TICK.saturating_sub(last_tick.elapsed());
            match self.requests.recv_timeout(wait) {
                Ok(req) => {
                    self.handle(req)?;
                    for _ in 0..MAX_BATCH {
                        match self.requests.try_recv() {
                            Ok(req) => self.handle(req)?,
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if last_tick.elapsed() >= TICK {
                self.node.tick();
                last_tick = Instant::now();
            }
            self.on_ready()?;
        }
    }

    fn handle(&mut self, req: Request) -> Result<(), StoreError> {
        match req {
            Request::Propose { id, op, reply } => {
                if self.node.raft.state != StateRole::Leader {
                    let _ = reply.send(Err(StoreError::NotLeader));
                    return Ok(());
                }
                let data = serde_json::to_vec(&op)?;
                match self.node.propose(id.to_be_bytes().to_vec(), data) {
                    Ok(()) => {
                        self.pending.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(StoreError::Raft(e.to_string())));
                    }
                }
            }
        }
        Ok(())
    }

    fn on_ready(&mut self) -> Result<(), StoreError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();

        // 1. Send out the messages that do not depend on persistence (leader appends).
        self.send(ready.take_messages());

        // 2. Install the snapshot, if any, before any committed entries that follow it:
        //    the state first (it records the snapshot too, see `StateMachine::restore`).
        if *ready.snapshot() != Snapshot::default() {
            let snapshot = ready.snapshot();
            self.state
                .restore(snapshot.get_metadata(), snapshot.get_data())?;
            self.storage.apply_snapshot_meta(snapshot.get_metadata())?;
            self.applied
                .store(snapshot.get_metadata().index, Ordering::Release);
        }

        // 3. Apply committed entries.
        self.apply_committed(ready.take_committed_entries())?;

        // 4. Append new entries to the log, and 5. persist the hard state; both are made
        //    durable with one flush before any message that depends on them leaves.
        self.storage.append(ready.entries())?;
        if let Some(hs) = ready.hs() {
            self.storage.set_hard_state(hs)?;
        }
        self.db.flush()?;

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
        self.compact_log()
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
        Ok(())
    }

    fn send(&self, messages: Vec<Message>) {
        // A one-member group has no peers to talk to; replication arrives with the QUIC
        // transport. Anything addressed elsewhere here would be a bug.
        debug_assert!(messages.is_empty(), "raft messages without a transport");
    }

    fn apply_committed(&mut self, entries: Vec<raft::eraftpb::Entry>) -> Result<(), StoreError> {
        for entry in entries {
            let index = entry.index;
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {
                    self.state.apply_noop(index)?;
                }
                EntryType::EntryNormal => {
                    let op: Op = serde_json::from_slice(&entry.data)?;
                    let outcome = self.state.apply(index, op)?;
                    if let Some(reply) =
                        proposal_id(&entry.context).and_then(|id| self.pending.remove(&id))
                    {
                        let _ = reply.send(outcome);
                    }
                }
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&entry.data)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let cs = self.node.apply_conf_change(&cc)?;
                    self.storage.set_conf_state(&cs)?;
                    self.state.apply_noop(index)?;
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&entry.data)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let cs = self.node.apply_conf_change(&cc)?;
                    self.storage.set_conf_state(&cs)?;
                    self.state.apply_noop(index)?;
                }
            }
            self.applied.store(index, Ordering::Release);
        }
        Ok(())
    }
}

fn proposal_id(context: &[u8]) -> Option<u128> {
    Some(u128::from_be_bytes(context.try_into().ok()?))
}
