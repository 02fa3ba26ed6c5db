//! [`Health`]: whether a node is fit to serve, as `GET /health` reports it.

use crate::node::NodeStatus;

/// A node whose applied index is more than this many entries behind its
/// commit index is reported unavailable: it would answer reads late. Well
/// above the entries one apply batch takes under load, so a busy but
/// healthy node is not flagged between two batches.
pub const MAX_HEALTHY_APPLY_LAG: u64 = 1000;

/// The verdict of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The node knows a leader, has applied (nearly) all it knows to be
    /// committed, and its disk takes writes.
    Ok {
        /// The leader it knows.
        leader: String,
        /// Its commit index.
        commit_index: u64,
        /// Its applied index.
        applied_index: u64,
    },
    /// The node cannot serve as it should.
    Unavailable {
        /// Why, in one sentence.
        reason: String,
    },
}

impl Health {
    /// Judges `status`: no leader, an applied index lagging the commit
    /// index by more than [`MAX_HEALTHY_APPLY_LAG`], or writes refused for
    /// the disk make the node unavailable.
    pub fn of(status: &NodeStatus) -> Health {
        let Some(leader) = status.leader else {
            return Health::Unavailable {
                reason: format!("no leader known (this node is a {})", status.role),
            };
        };
        let lag = status.commit_index.saturating_sub(status.applied_index);
        if lag > MAX_HEALTHY_APPLY_LAG {
            return Health::Unavailable {
                reason: format!(
                    "applying lags: applied index {} is {lag} entries behind commit index {}",
                    status.applied_index, status.commit_index
                ),
            };
        }
        if let Some(refusal) = &status.writes_refused {
            return Health::Unavailable {
                reason: format!("writes refused: {refusal}"),
            };
        }
        Health::Ok {
            leader: leader.to_string(),
            commit_index: status.commit_index,
            applied_index: status.applied_index,
        }
    }

    /// The HTTP status code: 200 or 503.
    pub fn http_status(&self) -> u16 {
        match self {
            Health::Ok { .. } => 200,
            Health::Unavailable { .. } => 503,
        }
    }

    /// The JSON body: `{"status":"ok","leader":..,"commit_index":..,
    /// "applied_index":..}` or `{"status":"unavailable","reason":..}`.
    pub fn to_json(&self) -> String {
        let body = match self {
            Health::Ok {
                leader,
                commit_index,
                applied_index,
            } => serde_json::json!({
                "status": "ok",
                "leader": leader,
                "commit_index": commit_index,
                "applied_index": applied_index,
            }),
            Health::Unavailable { reason } => serde_json::json!({
                "status": "unavailable",
                "reason": reason,
            }),
        };
        body.to_string()
    }
}
