//! Request budgets: how many bytes of inbound requests may be held at once,
//! and by whom (SPEC §9, fair shares).
//!
//! A request takes its share when its length prefix arrives and keeps it
//! until its response is written. Three budgets decide whether it may:
//!
//! - node certificates (2PC votes, forwarded proposals, ReadIndex) draw on
//!   a budget of their own, which no client can touch;
//! - clients and admins share another budget;
//! - within that one, each identity may hold at most its own share, however
//!   many connections and streams it opens, so one client cannot take the
//!   whole budget from the others.
//!
//! Waiting for a share is bounded: past `budget_wait` the request is refused
//! as busy, and the caller hears of it instead of waiting forever.

use super::quic::node_of;
use super::TransportConfig;
use certs::Identity;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a request got no share of its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BudgetError {
    /// No share came free within the wait.
    #[error("the request budget stayed exhausted; the node is busy")]
    Busy,
    /// The request needs more than the caller may ever hold.
    #[error("a request of {length} bytes exceeds the {limit}-byte budget")]
    TooLarge { length: usize, limit: usize },
}

/// The bytes a request holds; given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    _shared: OwnedSemaphorePermit,
    _own: Option<OwnedSemaphorePermit>,
}

/// The budgets of one transport; see the module documentation.
#[derive(Debug)]
pub(crate) struct RequestBudgets {
    nodes: Arc<Semaphore>,
    node_limit: usize,
    clients: Arc<Semaphore>,
    per_identity: usize,
    /// One semaphore per identity holding requests. Weak, so that an
    /// identity's entry goes once its last request is answered (the map is
    /// pruned as it grows), and the map stays as small as the set of
    /// identities with requests in flight.
    shares: Mutex<BTreeMap<Identity, Weak<Semaphore>>>,
    wait: Duration,
}

fn capped(bytes: usize) -> usize {
    bytes.min(Semaphore::MAX_PERMITS)
}

impl RequestBudgets {
    /// Budgets of the sizes `config` gives.
    pub(crate) fn new(config: &TransportConfig) -> Self {
        let node_limit = capped(config.max_node_request_bytes_in_flight);
        let client_limit = capped(config.max_request_bytes_in_flight);
        RequestBudgets {
            nodes: Arc::new(Semaphore::new(node_limit)),
            node_limit,
            clients: Arc::new(Semaphore::new(client_limit)),
            per_identity: capped(config.max_request_bytes_per_identity).min(client_limit),
            shares: Mutex::new(BTreeMap::new()),
            wait: config.budget_wait,
        }
    }

    /// The largest request `identity` could ever be given a share for.
    pub(crate) fn limit(&self, identity: &Identity) -> usize {
        match node_of(identity) {
            Some(_) => self.node_limit,
            None => self.per_identity,
        }
    }

    /// Takes `length` bytes for a request of `identity`, waiting at most the
    /// configured wait.
    pub(crate) async fn reserve(
        &self,
        identity: &Identity,
        length: usize,
    ) -> Result<Reservation, BudgetError> {
        let limit = self.limit(identity);
        let too_large = BudgetError::TooLarge { length, limit };
        if length > limit {
            return Err(too_large);
        }
        let permits = u32::try_from(length).map_err(|_| too_large)?;
        let deadline = tokio::time::Instant::now() + self.wait;
        let take = |semaphore: Arc<Semaphore>| async move {
            match tokio::time::timeout_at(deadline, semaphore.acquire_many_owned(permits)).await {
                Ok(Ok(permit)) => Ok(permit),
                // The semaphores are never closed; a closed one could only
                // mean the budget is gone, which is as good as busy.
                Ok(Err(_)) | Err(_) => Err(BudgetError::Busy),
            }
        };
        if node_of(identity).is_some() {
            let shared = take(self.nodes.clone()).await?;
            return Ok(Reservation {
                _shared: shared,
                _own: None,
            });
        }
        // Its own share first: a client waiting on itself holds nothing of
        // the budget the others share.
        let own = take(self.share_of(identity)).await?;
        let shared = take(self.clients.clone()).await?;
        Ok(Reservation {
            _shared: shared,
            _own: Some(own),
        })
    }

    fn share_of(&self, identity: &Identity) -> Arc<Semaphore> {
        let mut shares = self.shares.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(share) = shares.get(identity).and_then(Weak::upgrade) {
            return share;
        }
        // Entries of identities with nothing in flight are dropped here, so
        // the map never holds more than the identities currently served.
        shares.retain(|_, share| share.strong_count() > 0);
        let share = Arc::new(Semaphore::new(self.per_identity));
        shares.insert(identity.clone(), Arc::downgrade(&share));
        share
    }

    /// How many identities have a share in use (for tests).
    #[cfg(test)]
    pub(crate) fn identities_in_flight(&self) -> usize {
        let shares = self.shares.lock().unwrap_or_else(PoisonError::into_inner);
        shares
            .values()
            .filter(|share| share.strong_count() > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::NodeId;

    fn budgets() -> RequestBudgets {
        let mut config = TransportConfig::new(NodeId(1), "127.0.0.1:0".parse().unwrap());
        config.max_request_bytes_in_flight = 300;
        config.max_request_bytes_per_identity = 100;
        config.max_node_request_bytes_in_flight = 1000;
        config.budget_wait = Duration::from_millis(50);
        RequestBudgets::new(&config)
    }

    #[tokio::test]
    async fn one_identity_cannot_take_more_than_its_share() {
        let budgets = budgets();
        let alice = Identity::client("alice").unwrap();
        let bob = Identity::client("bob").unwrap();
        let held = budgets.reserve(&alice, 100).await.unwrap();
        assert_eq!(
            budgets.reserve(&alice, 1).await.unwrap_err(),
            BudgetError::Busy
        );
        let _bob = budgets.reserve(&bob, 100).await.unwrap();
        drop(held);
        let _again = budgets.reserve(&alice, 60).await.unwrap();
        assert_eq!(
            budgets.reserve(&alice, 101).await.unwrap_err(),
            BudgetError::TooLarge {
                length: 101,
                limit: 100
            }
        );
    }

    #[tokio::test]
    async fn clients_cannot_starve_the_nodes() {
        let budgets = budgets();
        let mut held = Vec::new();
        for name in ["a", "b", "c"] {
            let client = Identity::client(name).unwrap();
            held.push(budgets.reserve(&client, 100).await.unwrap());
        }
        let late = Identity::client("d").unwrap();
        assert_eq!(
            budgets.reserve(&late, 1).await.unwrap_err(),
            BudgetError::Busy,
            "the shared client budget is used up"
        );
        let node = Identity::node("node2").unwrap();
        assert!(budgets.reserve(&node, 1000).await.is_ok());
    }

    #[tokio::test]
    async fn shares_of_identities_with_nothing_in_flight_are_forgotten() {
        let budgets = budgets();
        for index in 0..50 {
            let client = Identity::client(&format!("client{index}")).unwrap();
            drop(budgets.reserve(&client, 10).await.unwrap());
        }
        let kept = budgets
            .reserve(&Identity::client("last").unwrap(), 10)
            .await
            .unwrap();
        assert_eq!(budgets.identities_in_flight(), 1);
        assert!(budgets.shares.lock().unwrap().len() <= 2);
        drop(kept);
    }
}
