//! The model against the real thing: the same seeded command sequences
//! applied to [`VaultModel`] and to the vault's SQLite state machine
//! (`vault::store::VaultStateMachine`, in a temporary directory) must give
//! the same outcome for every command and the same state after it.
//!
//! The 2PC simulation trusts the model to apply as the vault does; this
//! test is what makes that trust checkable. A sequence mixes what the model
//! knows: adds (create, update, retries of a client's last and older
//! sequence numbers), decisions (first and repeated, at the voted version
//! or a stale one, with the asked nodes equal to the members or not),
//! prunes, membership changes, and snapshot restores into a fresh store.
//!
//! The vault's state is read back from its database file (one read-only
//! connection): its secrets, sessions, 2PC decisions and pruning horizon.
//! One difference is the vault's by design and stated in the model's
//! documentation: a restore raises the vault's node-local horizon to the
//! snapshot's index, while the model carries its horizon in the snapshot.

use super::*;
use consensus::state_machine::{CommittedCommand, StateMachine};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::{Connection, OpenFlags};
use vault::protocol::{
    decode, encode, ClientSession, Operation, Reply, Response, SealedSecret, VaultError,
};
use vault::store::VaultStateMachine;

/// Command sequences tried, each from its own seed.
const SEQUENCES: u64 = 60;
/// Commands per sequence.
const COMMANDS: u64 = 300;
/// The owner of every secret, as in the simulation.
const OWNER: &str = "client:sim";

/// The one step a sequence takes next.
#[derive(Clone, Debug)]
enum Step {
    /// A command in the log at the next index.
    Apply(VaultCommand),
    /// A membership change in force from the next index on.
    Members(Membership),
    /// Both sides replaced by a restore of their own snapshot.
    Restore,
}

/// The vault under test, with the file it lives in.
struct Vault {
    machine: VaultStateMachine,
    /// A read-only connection to the same file: each query sees the last
    /// committed batch.
    reader: Connection,
    /// Keeps the directory until the test ends.
    _directory: tempfile::TempDir,
}

impl Vault {
    fn open() -> Vault {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let path = directory.path().join("vault.db");
        let machine = VaultStateMachine::open(&path).expect("open the vault database");
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY;
        let reader = Connection::open_with_flags(&path, flags).expect("read the vault");
        Vault {
            machine,
            reader,
            _directory: directory,
        }
    }

    /// The replicated state as the model holds it, read from the file.
    fn state(&self) -> ModelState {
        let pairs = |sql: &str| -> Vec<(String, i64, i64)> {
            let mut statement = self.reader.prepare(sql).expect("a query of the vault");
            let rows = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .expect("rows");
            rows.map(|row| row.expect("a row")).collect()
        };
        let owner = |table: &str, columns: &str, order: &str| {
            pairs(&format!(
                "SELECT {columns} FROM {table} WHERE owner = '{OWNER}' ORDER BY {order}"
            ))
        };
        let secrets = owner("secrets", "name, version, 0", "name");
        let sessions = owner("sessions", "'', client_id, last_seq", "client_id");
        let decisions = pairs("SELECT tx, decision, log_index FROM twopc_decisions ORDER BY tx");
        let horizon = pairs("SELECT '', value, 0 FROM meta WHERE key = 'twopc_pruned_through'");
        // SQLite stores the u64 values bit for bit as i64 (as the vault does).
        let unsigned = |value: i64| value as u64;
        let decision = |value: i64| match value {
            1 => Decision::Commit,
            _ => Decision::Abort,
        };
        ModelState {
            secrets: secrets
                .into_iter()
                .map(|(name, version, _)| (name, unsigned(version)))
                .collect(),
            decisions: decisions
                .into_iter()
                .map(|(tx, value, index)| (tx, (decision(value), unsigned(index))))
                .collect(),
            sessions: sessions
                .into_iter()
                .map(|(_, client, sequence)| (unsigned(client), unsigned(sequence)))
                .collect(),
            pruned_through: horizon.first().map_or(0, |(_, value, _)| unsigned(*value)),
            applied_index: self.machine.applied_index(),
        }
    }
}

/// What both sides must agree on after every step.
#[derive(Debug, PartialEq, Eq)]
struct ModelState {
    secrets: BTreeMap<String, u64>,
    decisions: BTreeMap<String, (Decision, LogIndex)>,
    sessions: BTreeMap<u64, u64>,
    pruned_through: LogIndex,
    applied_index: LogIndex,
}

impl VaultModel {
    fn state(&self) -> ModelState {
        ModelState {
            secrets: self.secrets.clone(),
            decisions: self.decisions.clone(),
            sessions: self.sessions.clone(),
            pruned_through: self.pruned_through,
            applied_index: self.applied_index,
        }
    }
}

/// The vault command that asks what `command` asks of the model. An add
/// is sealed as the version the model's state says it will make (the
/// vault refuses any other); if the states disagree, the state comparison
/// reports it.
fn vault_command(command: &VaultCommand, model: &VaultModel) -> Vec<u8> {
    let (session, op) = match command {
        VaultCommand::Add {
            client,
            sequence,
            name,
            update,
        } => {
            let session = ClientSession {
                client_id: *client,
                seq: *sequence,
            };
            let version = model.version(name).map_or(1, |version| version + 1);
            let op = Operation::Put {
                name: name.clone(),
                sealed: SealedSecret(vec![7; 16]),
                update: *update,
                version,
            };
            (Some(session), op)
        }
        VaultCommand::Decide {
            tx,
            name,
            version,
            decision,
            participants,
        } => {
            let op = Operation::Decide {
                tx: tx.clone(),
                name: name.clone(),
                version: *version,
                decision: vault_decision(*decision),
                participants: participants.clone(),
            };
            (None, op)
        }
        VaultCommand::Prune { through } => (None, Operation::Prune { through: *through }),
    };
    encode(&vault::protocol::VaultCommand::V1 {
        session,
        owner: OWNER.to_string(),
        proposed_at_ms: 1,
        op,
    })
}

fn vault_decision(decision: Decision) -> vault::protocol::Decision {
    match decision {
        Decision::Commit => vault::protocol::Decision::Commit,
        Decision::Abort => vault::protocol::Decision::Abort,
    }
}

/// Checks that the vault's `reply` is the model's `effect`; `last_reply`
/// is the vault's stored answer of the command's client session (a retry
/// of the last sequence number returns it), `horizon_floor` the highest
/// index restored since the sequence began; `context` names the seed and
/// step for the failure message.
fn same_outcome(
    effect: &Effect,
    reply: &Reply,
    last_reply: Option<&Reply>,
    horizon_floor: u64,
    context: &str,
) {
    let expected: Reply = match effect {
        Effect::Added { version, .. } => Ok(Response::Added { version: *version }),
        Effect::AddRefused { .. } => {
            assert!(
                matches!(
                    reply,
                    Err(VaultError::AlreadyExists(_)) | Err(VaultError::NotFound(_))
                ),
                "{context}: the model refused the add, the vault answered {reply:?}"
            );
            return;
        }
        Effect::Duplicate => {
            let superseded = matches!(reply, Err(VaultError::Conflict(_)));
            assert!(
                superseded || Some(reply) == last_reply,
                "{context}: the model saw a retry, the vault answered {reply:?} \
                 (last answer {last_reply:?})"
            );
            return;
        }
        Effect::Decided {
            tx,
            decision,
            deleted,
            ..
        } => Ok(Response::Decided {
            tx: tx.clone(),
            decision: vault_decision(*decision),
            deleted: *deleted,
        }),
        Effect::AlreadyDecided { tx, first } => Ok(Response::Decided {
            tx: tx.clone(),
            decision: vault_decision(*first),
            deleted: false,
        }),
        Effect::Pruned { through, txs } => Ok(Response::Pruned {
            through: (*through).max(horizon_floor),
            decisions: txs.len() as u64,
        }),
    };
    assert_eq!(reply, &expected, "{context}: the model's effect {effect:?}");
}

/// The next step of a sequence, drawn from `rng`; `sequences` holds each
/// client's next sequence number, `index` the log index the step is at.
fn random_step(rng: &mut ChaCha8Rng, sequences: &mut BTreeMap<u64, u64>, index: u64) -> Step {
    let names = ["a", "b", "c"];
    let name = names[rng.gen_range(0..names.len())].to_string();
    match rng.gen_range(0..100) {
        0..=39 => {
            let client = rng.gen_range(1..=3);
            let next = sequences.entry(client).or_insert(1);
            // Mostly a new request; sometimes a retry of the last one or
            // of an older one.
            let sequence = match rng.gen_range(0..10) {
                0 => next.saturating_sub(1),
                1 => next.saturating_sub(rng.gen_range(2..=4)),
                _ => {
                    *next += 1;
                    *next - 1
                }
            };
            let update = rng.gen_bool(0.5);
            Step::Apply(VaultCommand::Add {
                client,
                sequence,
                name,
                update,
            })
        }
        40..=79 => {
            let tx = format!("t{}", rng.gen_range(0..12));
            let decision = if rng.gen_bool(0.6) {
                Decision::Commit
            } else {
                Decision::Abort
            };
            let participants = match rng.gen_range(0..4) {
                0 => Vec::new(),
                1 => vec![NodeId(1), NodeId(2)],
                2 => vec![NodeId(3), NodeId(1), NodeId(2)],
                _ => vec![NodeId(1), NodeId(2), NodeId(3), NodeId(4)],
            };
            Step::Apply(VaultCommand::Decide {
                tx,
                name,
                version: rng.gen_range(1..=3),
                decision,
                participants,
            })
        }
        80..=87 => Step::Apply(VaultCommand::Prune {
            through: rng.gen_range(0..=index),
        }),
        88..=98 => {
            let mut membership = Membership::with_voters([1, 2, 3].map(NodeId));
            if rng.gen_bool(0.5) {
                membership.learners.insert(NodeId(4));
            }
            if rng.gen_bool(0.3) {
                membership.voters.remove(&NodeId(3));
            }
            Step::Members(membership)
        }
        _ => Step::Restore,
    }
}

/// The model and the vault side by side, with what the checks need.
struct Pair {
    model: VaultModel,
    vault: Vault,
    /// The vault's last stored answer per client session.
    replies: BTreeMap<u64, Reply>,
    /// The membership in force, once a step set one.
    membership: Option<Membership>,
    /// The highest index restored so far (the vault's horizon is at least
    /// that).
    horizon_floor: LogIndex,
    /// The index of the last command applied.
    index: LogIndex,
}

impl Pair {
    fn new() -> Pair {
        Pair {
            model: VaultModel::default(),
            vault: Vault::open(),
            replies: BTreeMap::new(),
            membership: None,
            horizon_floor: 0,
            index: 0,
        }
    }

    /// Applies `command` at the next index on both sides and compares the
    /// outcomes.
    fn apply(&mut self, command: &VaultCommand, context: &str) {
        self.index += 1;
        let bytes = vault_command(command, &self.model);
        let effect = self.model.apply(self.index, command);
        let committed = CommittedCommand {
            index: self.index,
            term: 1,
            command: &bytes,
        };
        let replies = self.vault.machine.apply(&[committed]).expect("vault apply");
        let reply: Reply = decode(&replies[0]).expect("a vault reply");
        let client = match command {
            VaultCommand::Add { client, .. } => Some(*client),
            _ => None,
        };
        let last = client.and_then(|client| self.replies.get(&client));
        same_outcome(&effect, &reply, last, self.horizon_floor, context);
        if let (Some(client), false) = (client, effect == Effect::Duplicate) {
            self.replies.insert(client, reply);
        }
    }

    /// Tells both sides the membership in force, as the runtime does.
    fn members(&mut self, membership: Membership) {
        self.model.membership_changed(self.index, &membership);
        let vault = &mut self.vault.machine;
        vault.membership_changed(self.index, &membership);
        self.membership = Some(membership);
    }

    /// Replaces each side by a restore of its own snapshot (the vault into
    /// a fresh database), then tells both the membership again, as the
    /// runtime does after every restore.
    fn restore(&mut self) {
        self.model = VaultModel::restore(&self.model.snapshot()).expect("model restore");
        let snapshot = self.vault.machine.snapshot().expect("vault snapshot");
        let fresh = Vault::open();
        self.vault = fresh;
        let vault = &mut self.vault.machine;
        vault.restore(self.index, &snapshot).expect("vault restore");
        self.horizon_floor = self.horizon_floor.max(self.index);
        if let Some(membership) = self.membership.take() {
            self.members(membership);
        }
    }

    /// Compares the whole state of both sides.
    fn same_state(&self, context: &str) {
        let mut expected = self.model.state();
        expected.pruned_through = expected.pruned_through.max(self.horizon_floor);
        assert_eq!(self.vault.state(), expected, "{context}");
    }
}

/// Runs one seeded sequence on both sides, checking after every step.
fn run_sequence(seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pair = Pair::new();
    let mut sequences = BTreeMap::new();
    for _ in 0..COMMANDS {
        let step = random_step(&mut rng, &mut sequences, pair.index);
        let context = format!("seed {seed}, after index {}, step {step:?}", pair.index);
        match step {
            Step::Apply(command) => pair.apply(&command, &context),
            Step::Members(membership) => pair.members(membership),
            Step::Restore => pair.restore(),
        }
        pair.same_state(&context);
    }
}

/// The model applies every command as the vault does: same outcomes, same
/// secrets, sessions, decisions and horizon, over seeded sequences.
#[test]
fn the_model_applies_commands_as_the_vault_does() {
    for seed in 0..SEQUENCES {
        run_sequence(seed);
    }
}
