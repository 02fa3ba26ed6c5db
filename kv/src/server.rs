//! The key-value store on the bus: [`KvApplication`] serves put, get, cas
//! and status; [`run`] runs one node. Nothing here reaches inside the bus:
//! it is the whole of what a second application needs.

use crate::protocol::{
    decode, encode, KvCommand, KvError, KvQuery, KvReply, KvRequest, KvResponse, NodeReport,
    Operation,
};
use crate::store::{KvStateMachine, StoreError};
use bus::{Application, BusOptions, Context, Launch, RunError, Services};
use certs::Identity;
use consensus::node::{NodeError, ReadConsistency};
use consensus::raft::NodeId;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The key-value store has no node-to-node requests of its own: Raft
/// carries everything it needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NoPeerRequests {}

/// The key-value plug-in.
pub struct KvApplication;

impl Application for KvApplication {
    type StateMachine = KvStateMachine;
    type Request = KvRequest;
    type Reply = KvReply;
    type PeerRequest = NoPeerRequests;
    type PeerReply = String;

    async fn serve_client(&self, context: &Context<Self>, request: KvRequest) -> KvReply {
        let owner = match context.caller() {
            Identity::Client(name) => format!("client:{name}"),
            Identity::Admin(name) => format!("admin:{name}"),
            Identity::Node(_) => {
                return Err(KvError::PermissionDenied(
                    "a node certificate cannot act as a client".into(),
                ))
            }
        };
        match request {
            KvRequest::Put {
                session,
                key,
                value,
            } => {
                write(
                    context,
                    KvCommand {
                        owner,
                        session,
                        key,
                        operation: Operation::Put(value),
                    },
                )
                .await
            }
            KvRequest::Cas {
                session,
                key,
                expected,
                new,
            } => {
                let operation = Operation::Cas { expected, new };
                write(
                    context,
                    KvCommand {
                        owner,
                        session,
                        key,
                        operation,
                    },
                )
                .await
            }
            KvRequest::Get { key, stale } => {
                let consistency = if stale {
                    ReadConsistency::Stale
                } else {
                    ReadConsistency::Linearizable
                };
                answer(context.read(encode(&KvQuery::Get(key)), consistency).await)
            }
            KvRequest::Status => {
                let status = context.status();
                Ok(KvResponse::Status(NodeReport {
                    id: status.id.to_string(),
                    role: status.role,
                    term: status.term,
                    leader: status.leader.map(|leader| leader.to_string()),
                    commit_index: status.commit_index,
                    applied_index: status.applied_index,
                }))
            }
        }
    }

    async fn serve_peer(&self, _from: NodeId, request: NoPeerRequests) -> String {
        match request {}
    }

    fn refuse_peer(reason: String) -> String {
        reason
    }
}

async fn write(context: &Context<KvApplication>, command: KvCommand) -> KvReply {
    answer(context.propose(encode(&command)).await)
}

/// The state machine's answer, or the runtime's error as the client's.
fn answer(outcome: Result<Vec<u8>, NodeError>) -> KvReply {
    match outcome {
        Ok(bytes) => decode::<KvReply>(&bytes).map_err(|error| {
            KvError::Internal(format!("undecodable state machine reply: {error}"))
        })?,
        Err(
            error @ (NodeError::NotLeader { .. }
            | NodeError::Unavailable
            | NodeError::Busy
            | NodeError::DiskFull(_)),
        ) => Err(KvError::Unavailable(error.to_string())),
        Err(error) => Err(KvError::Internal(error.to_string())),
    }
}

/// Where a key-value node keeps its files: its own Raft log and database,
/// under the node's data directory, apart from any other application's.
pub fn kv_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("kv")
}

/// Why a key-value node could not start or stopped.
pub type ServeError = RunError<StoreError>;

/// Opens the key-value database for the bus.
struct KvLaunch {
    database: PathBuf,
}

impl Launch for KvLaunch {
    type Application = KvApplication;
    type Error = StoreError;

    fn open(&mut self) -> Result<KvStateMachine, StoreError> {
        KvStateMachine::open(&self.database)
    }

    fn start(self, _services: &mut Services<KvApplication>) -> Result<KvApplication, StoreError> {
        Ok(KvApplication)
    }
}

/// Runs a key-value node until `shutdown` completes; its database is
/// `database`, its Raft log `options.node.raft_dir`.
pub async fn run(
    options: BusOptions,
    database: PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    bus::run(options, KvLaunch { database }, shutdown).await
}
