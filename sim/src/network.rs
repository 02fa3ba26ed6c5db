//! The simulated network: every message between two nodes goes through here,
//! where a seeded RNG loses, delays, reorders and duplicates it, and where
//! partitions cut links in one or both directions.
//!
//! Time is the simulation step. A message sent at step `t` is delivered at
//! `t + delay`; two messages on one link can overtake each other whenever
//! their delays differ, which is how reordering happens.

use consensus::raft::NodeId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// How hostile the network is. Probabilities are per message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct NetworkFaults {
    /// Probability that a message is lost.
    pub(crate) loss: f64,
    /// Probability that a message is delivered twice.
    pub(crate) duplicate: f64,
    /// Delays are drawn uniformly from `min_delay..=max_delay` steps.
    pub(crate) min_delay: u64,
    /// See `min_delay`.
    pub(crate) max_delay: u64,
    /// Probability that a message is held back much longer (up to
    /// `4 * max_delay`), to reorder it behind later traffic.
    pub(crate) long_delay: f64,
}

impl NetworkFaults {
    /// A perfect network: nothing lost, everything next step.
    pub(crate) const RELIABLE: NetworkFaults = NetworkFaults {
        loss: 0.0,
        duplicate: 0.0,
        min_delay: 1,
        max_delay: 1,
        long_delay: 0.0,
    };

    /// Draws a fault profile for one run: some runs are gentle, some nasty.
    pub(crate) fn random(rng: &mut ChaCha8Rng) -> NetworkFaults {
        let max_delay = rng.gen_range(1..=12);
        NetworkFaults {
            loss: [0.0, 0.01, 0.05, 0.15][rng.gen_range(0..4)],
            duplicate: [0.0, 0.01, 0.05][rng.gen_range(0..3)],
            min_delay: rng.gen_range(1..=max_delay),
            max_delay,
            long_delay: [0.0, 0.02][rng.gen_range(0..2)],
        }
    }
}

/// A message in flight and when it lands.
#[derive(Clone, Debug)]
pub(crate) struct Delivery<M> {
    /// Sender.
    pub(crate) from: NodeId,
    /// Recipient.
    pub(crate) to: NodeId,
    /// The payload.
    pub(crate) message: M,
}

/// The seeded network.
#[derive(Debug)]
pub(crate) struct Network<M> {
    faults: NetworkFaults,
    /// (delivery step, send order) -> message; the send order breaks ties
    /// deterministically.
    in_flight: BTreeMap<(u64, u64), Delivery<M>>,
    sent: u64,
    /// Directed links that drop everything: (from, to).
    cut: BTreeSet<(NodeId, NodeId)>,
}

impl<M: Clone> Network<M> {
    /// An empty network with the given fault profile.
    pub(crate) fn new(faults: NetworkFaults) -> Self {
        Self {
            faults,
            in_flight: BTreeMap::new(),
            sent: 0,
            cut: BTreeSet::new(),
        }
    }

    /// Changes the fault profile for messages sent from now on.
    pub(crate) fn set_faults(&mut self, faults: NetworkFaults) {
        self.faults = faults;
    }

    /// Sends `message` at step `now`. Returns false when it was dropped at
    /// once (cut link or loss).
    pub(crate) fn send(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        from: NodeId,
        to: NodeId,
        message: M,
    ) -> bool {
        if self.cut.contains(&(from, to)) || rng.gen_bool(self.faults.loss) {
            return false;
        }
        let copies = if rng.gen_bool(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let faults = self.faults;
            let mut delay = rng.gen_range(faults.min_delay..=faults.max_delay);
            if rng.gen_bool(faults.long_delay) {
                delay += rng.gen_range(0..=faults.max_delay * 4);
            }
            self.sent += 1;
            let delivery = Delivery {
                from,
                to,
                message: message.clone(),
            };
            self.in_flight.insert((now + delay, self.sent), delivery);
        }
        true
    }

    /// Takes the next message due at or before `now`, if any. A message whose
    /// link was cut while it was in flight is dropped here.
    pub(crate) fn deliver(&mut self, now: u64) -> Option<Delivery<M>> {
        loop {
            let entry = self.in_flight.first_entry()?;
            if entry.key().0 > now {
                return None;
            }
            let delivery = entry.remove();
            if !self.cut.contains(&(delivery.from, delivery.to)) {
                return Some(delivery);
            }
        }
    }

    /// Cuts the link `from -> to` (one direction only).
    pub(crate) fn cut(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    /// Splits the nodes into `side` and everyone else, both directions.
    pub(crate) fn partition(&mut self, side: &BTreeSet<NodeId>, all: &BTreeSet<NodeId>) {
        for a in side {
            for b in all.difference(side) {
                self.cut(*a, *b);
                self.cut(*b, *a);
            }
        }
    }

    /// Drops every message addressed to or sent by `node` (it crashed: its
    /// sockets and buffers are gone).
    pub(crate) fn drop_node_traffic(&mut self, node: NodeId) {
        self.in_flight
            .retain(|_, delivery| delivery.to != node && delivery.from != node);
    }

    /// Drops every message addressed to `node` (it crashed: what it had
    /// already sent is on the wire and may still arrive).
    pub(crate) fn drop_traffic_to(&mut self, node: NodeId) {
        self.in_flight.retain(|_, delivery| delivery.to != node);
    }

    /// Restores every link.
    pub(crate) fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether the link `from -> to` drops everything.
    pub(crate) fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Takes over `other`'s cut links and weather: a second kind of traffic
    /// between the same nodes (2PC next to Raft) suffers the same faults.
    pub(crate) fn mirror<N>(&mut self, other: &Network<N>) {
        self.faults = other.faults;
        self.cut.clone_from(&other.cut);
    }

    /// A message from a node to itself: it does not touch the network (no
    /// loss, no duplicate, no cut) and is handled at the next delivery.
    pub(crate) fn send_local(&mut self, now: u64, node: NodeId, message: M) {
        self.sent += 1;
        let delivery = Delivery {
            from: node,
            to: node,
            message,
        };
        self.in_flight.insert((now, self.sent), delivery);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn nodes(ids: &[u64]) -> BTreeSet<NodeId> {
        ids.iter().map(|id| NodeId(*id)).collect()
    }

    #[test]
    fn partitions_cut_both_directions_and_heal() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut network = Network::new(NetworkFaults::RELIABLE);
        network.partition(&nodes(&[1]), &nodes(&[1, 2, 3]));
        assert!(!network.send(&mut rng, 0, NodeId(1), NodeId(2), "a"));
        assert!(!network.send(&mut rng, 0, NodeId(3), NodeId(1), "b"));
        assert!(network.send(&mut rng, 0, NodeId(2), NodeId(3), "c"));
        network.heal();
        assert!(network.send(&mut rng, 0, NodeId(1), NodeId(2), "d"));
        let delivered: Vec<_> = std::iter::from_fn(|| network.deliver(1)).collect();
        let payloads: Vec<_> = delivered.iter().map(|d| d.message).collect();
        assert_eq!(payloads, ["c", "d"]);
    }

    #[test]
    fn asymmetric_cut_and_in_flight_messages() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut network = Network::new(NetworkFaults::RELIABLE);
        assert!(network.send(&mut rng, 0, NodeId(1), NodeId(2), 1));
        network.cut(NodeId(1), NodeId(2));
        // Cut while in flight: lost. The other direction still works.
        assert!(network.send(&mut rng, 0, NodeId(2), NodeId(1), 2));
        assert_eq!(network.deliver(5).map(|d| d.message), Some(2));
        assert!(network.deliver(5).is_none());
    }

    #[test]
    fn same_seed_same_schedule() {
        let faults = NetworkFaults {
            loss: 0.2,
            duplicate: 0.2,
            min_delay: 1,
            max_delay: 9,
            long_delay: 0.1,
        };
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut network = Network::new(faults);
            for n in 0..200u64 {
                network.send(&mut rng, n, NodeId(1 + n % 3), NodeId(1 + (n + 1) % 3), n);
            }
            std::iter::from_fn(|| network.deliver(10_000))
                .map(|d| d.message)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        let schedule = run(5);
        // Losses, duplicates and reorderings all happened.
        assert!(schedule.len() != 200);
        assert!(schedule.windows(2).any(|pair| pair[0] > pair[1]));
        assert!(schedule.windows(2).any(|pair| pair[0] == pair[1]));
    }
}
