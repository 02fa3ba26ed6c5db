//! A node's metrics: what the runtime, the storage, the transport and the
//! application record, and the Prometheus text they are scraped as.
//!
//! [`Metrics`] is a cheap cloneable handle (one `Arc`). Everything on a hot
//! path is an atomic: gauges and counters are prometheus-client's atomic
//! types, the latency histograms are [`LatencyHistogram`]s (one atomic per
//! bucket), and labelled counters are resolved to their atomic once, when
//! the registry is built, so recording never takes a lock. Only a scrape
//! ([`Metrics::encode`]) walks the registry.
//!
//! Who records what (the Raft core records nothing: it stays pure):
//!
//! | metric | recorded by |
//! | --- | --- |
//! | `vault_raft_term`, `_is_leader`, `_commit_index`, `_applied_index`, `_members` | the driver, with each status it publishes |
//! | `vault_raft_proposals_total` | the driver, per command it appends as leader |
//! | `vault_raft_proposal_commit_seconds` | the driver: from append to commit, on the leader |
//! | `vault_raft_apply_seconds` | the apply worker, per batch applied to the state machine |
//! | `vault_wal_fsync_seconds` | the file store, per `fdatasync` of the log |
//! | `vault_twopc_transactions_total{decision}` | the application's 2PC coordinator |
//! | `vault_transport_refused_connections_total{reason}` | the transport's accept path |
//! | `process_*` | read from `/proc` at each scrape |
//!
//! [`serve`] answers `GET /metrics` and `GET /health` over HTTP.

mod health;
mod histogram;
mod http;
mod process;

pub use health::{Health, MAX_HEALTHY_APPLY_LAG};
pub use histogram::LatencyHistogram;
pub use http::{serve, HttpError, StatusSource, MAX_HTTP_CONNECTIONS};

use crate::node::NodeStatus;
use crate::twopc::Decision;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Why the transport refused a connection, the `reason` label of
/// `vault_transport_refused_connections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// No connection slot left (before any TLS work).
    ConnectionLimit,
    /// Too many handshakes in progress (before any TLS work).
    HandshakeLimit,
    /// The TLS handshake failed: no certificate, or one the CA did not sign.
    HandshakeFailed,
    /// The certificate carries no identity this cluster knows.
    BadIdentity,
    /// A node certificate whose node is not a member of the cluster.
    NotMember,
}

impl RefusalReason {
    const ALL: [RefusalReason; 5] = [
        RefusalReason::ConnectionLimit,
        RefusalReason::HandshakeLimit,
        RefusalReason::HandshakeFailed,
        RefusalReason::BadIdentity,
        RefusalReason::NotMember,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::ConnectionLimit => "connection_limit",
            RefusalReason::HandshakeLimit => "handshake_limit",
            RefusalReason::HandshakeFailed => "handshake_failed",
            RefusalReason::BadIdentity => "bad_identity",
            RefusalReason::NotMember => "not_member",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

type Labels = Vec<(&'static str, &'static str)>;

/// The node's metrics; see the module documentation. Clones share
/// everything. `Default` makes a fresh, empty registry (a test or a
/// benchmark that does not scrape can use it and ignore it).
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    term: Gauge,
    is_leader: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    members: Gauge,
    proposals: Counter,
    proposal_commit: LatencyHistogram,
    apply: LatencyHistogram,
    wal_fsync: LatencyHistogram,
    twopc_commit: Counter,
    twopc_abort: Counter,
    refused: [Counter; RefusalReason::ALL.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let term = gauge(&mut registry, "vault_raft_term", "Current Raft term");
        let is_leader = gauge(
            &mut registry,
            "vault_raft_is_leader",
            "1 while this node is the Raft leader, else 0",
        );
        let commit_index = gauge(
            &mut registry,
            "vault_raft_commit_index",
            "Highest log index known to be committed",
        );
        let applied_index = gauge(
            &mut registry,
            "vault_raft_applied_index",
            "Highest log index applied to the state machine",
        );
        let members = gauge(
            &mut registry,
            "vault_raft_members",
            "Members (voters and learners) of the configuration in force",
        );
        let proposals = Counter::default();
        registry.register(
            "vault_raft_proposals",
            "Commands this node appended to the log as leader",
            proposals.clone(),
        );
        let histogram = |registry: &mut Registry, name: &str, help: &str| {
            let histogram = LatencyHistogram::default();
            registry.register(name, help, histogram.clone());
            histogram
        };
        let proposal_commit = histogram(
            &mut registry,
            "vault_raft_proposal_commit_seconds",
            "Time from a proposal's append on the leader to its commit",
        );
        let apply = histogram(
            &mut registry,
            "vault_raft_apply_seconds",
            "Time to apply one batch of committed entries to the state machine",
        );
        let wal_fsync = histogram(
            &mut registry,
            "vault_wal_fsync_seconds",
            "Time of one fdatasync of the Raft log",
        );
        let decisions = Family::<Labels, Counter>::default();
        registry.register(
            "vault_twopc_transactions",
            "Two-phase commit transactions this node coordinated, by logged decision",
            decisions.clone(),
        );
        // Resolved once: recording then touches only the counter's atomic.
        let twopc_commit = decisions
            .get_or_create(&vec![("decision", "commit")])
            .clone();
        let twopc_abort = decisions
            .get_or_create(&vec![("decision", "abort")])
            .clone();
        let refusals = Family::<Labels, Counter>::default();
        registry.register(
            "vault_transport_refused_connections",
            "Connections the transport refused, by reason",
            refusals.clone(),
        );
        let refused = RefusalReason::ALL.map(|reason| {
            refusals
                .get_or_create(&vec![("reason", reason.label())])
                .clone()
        });
        registry.register_collector(Box::new(process::ProcessCollector));
        Metrics {
            inner: Arc::new(Inner {
                registry,
                term,
                is_leader,
                commit_index,
                applied_index,
                members,
                proposals,
                proposal_commit,
                apply,
                wal_fsync,
                twopc_commit,
                twopc_abort,
                refused,
            }),
        }
    }

    /// Sets the Raft gauges from a status the driver publishes.
    pub fn record_status(&self, status: &NodeStatus) {
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let inner = &self.inner;
        inner.term.set(gauge(status.term));
        inner.is_leader.set(i64::from(status.role == "leader"));
        inner.commit_index.set(gauge(status.commit_index));
        inner.applied_index.set(gauge(status.applied_index));
        inner
            .members
            .set(gauge((status.voters.len() + status.learners.len()) as u64));
    }

    /// Counts `count` commands appended to the log by this leader.
    pub fn proposals_appended(&self, count: u64) {
        self.inner.proposals.inc_by(count);
    }

    /// From a proposal's append on the leader to its commit.
    pub fn proposal_commit_latency(&self) -> &LatencyHistogram {
        &self.inner.proposal_commit
    }

    /// Applying one batch of committed entries.
    pub fn apply_latency(&self) -> &LatencyHistogram {
        &self.inner.apply
    }

    /// One `fdatasync` of the write-ahead log.
    pub fn wal_fsync_latency(&self) -> &LatencyHistogram {
        &self.inner.wal_fsync
    }

    /// Counts a two-phase commit transaction this node coordinated, once
    /// its decision is in the log.
    pub fn twopc_decided(&self, decision: Decision) {
        match decision {
            Decision::Commit => self.inner.twopc_commit.inc(),
            Decision::Abort => self.inner.twopc_abort.inc(),
        };
    }

    /// Counts a connection the transport refused.
    pub fn connection_refused(&self, reason: RefusalReason) {
        self.inner.refused[reason.slot()].inc();
    }

    /// Every metric in the text format (OpenMetrics 1.0, which Prometheus
    /// scrapes; it ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug
        // in a metric's encoding, and then the scrape shows what it has.
        if let Err(error) = encode(&mut text, &self.inner.registry) {
            tracing::warn!("encoding the metrics failed part way: {error}");
        }
        text
    }
}

#[cfg(test)]
mod tests;
