//! Changing a [`TestCluster`]'s membership from the outside (SPEC §13):
//! `cluster add-node`, `member list/add/remove`, and looking at a chosen
//! subset of nodes (a removed node may keep running, and must then be left
//! out of what "the cluster" answers).

use crate::{free_port_range, node_number, run_cli, CliResult, ClientIdentity, TestCluster};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One row of `member list --json`:
/// `{"id","addr","role":"voter"|"learner","leader","reachable","match_index"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `node4`.
    pub id: String,
    /// `host:port`.
    pub addr: String,
    /// `"voter"` or `"learner"`.
    pub role: String,
    /// Whether this member is the leader that answered.
    pub leader: bool,
    /// Whether the leader hears from it.
    pub reachable: bool,
    /// The highest log index the leader knows it holds.
    pub match_index: u64,
}

impl Member {
    /// Parses one row, insisting on exactly the keys and value types of
    /// SPEC §8, so that a renamed or extra field fails the test that reads
    /// it instead of being ignored.
    pub fn from_json(row: &Value) -> Result<Member, String> {
        let object = row.as_object().ok_or(format!("not an object: {row}"))?;
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let expected = ["addr", "id", "leader", "match_index", "reachable", "role"];
        if keys != expected {
            return Err(format!("keys {keys:?}, expected {expected:?}: {row}"));
        }
        let text = |key: &str| {
            row[key]
                .as_str()
                .map(str::to_string)
                .ok_or(format!("{key} is not a string: {row}"))
        };
        let flag = |key: &str| row[key].as_bool().ok_or(format!("{key} not a bool: {row}"));
        let role = text("role")?;
        if role != "voter" && role != "learner" {
            return Err(format!("role {role:?} is neither voter nor learner: {row}"));
        }
        Ok(Member {
            id: text("id")?,
            addr: text("addr")?,
            role,
            leader: flag("leader")?,
            reachable: flag("reachable")?,
            match_index: row["match_index"]
                .as_u64()
                .ok_or(format!("match_index is not a number: {row}"))?,
        })
    }

    /// Whether this member votes.
    pub fn is_voter(&self) -> bool {
        self.role == "voter"
    }
}

/// Parses a whole `member list --json` document: `{"members":[...]}` and
/// nothing else.
pub(crate) fn parse_member_list(document: &Value) -> Result<Vec<Member>, String> {
    let object = document
        .as_object()
        .ok_or(format!("not an object: {document}"))?;
    if object.len() != 1 {
        return Err(format!("expected only \"members\": {document}"));
    }
    document["members"]
        .as_array()
        .ok_or(format!("members is not an array: {document}"))?
        .iter()
        .map(Member::from_json)
        .collect()
}

/// What one node says of itself in `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// `leader`, `follower`, `learner`, ...
    pub role: String,
    /// Its current term.
    pub term: u64,
    /// The leader it follows, if it knows one.
    pub leader: Option<usize>,
}

impl TestCluster {
    /// Writes `DIR/<file_name>`: the admin's client configuration listing
    /// only `nodes` (see [`TestCluster::write_client_config`]).
    pub fn admin_config(&self, file_name: &str, nodes: &[usize]) -> PathBuf {
        self.write_client_config(file_name, &ClientIdentity::dir("admin"), nodes, None)
    }

    /// Reserves a free loopback port for a new node `node<size + 1>`, runs
    /// `cluster add-node` for it (which also lists it in `DIR/client.toml`)
    /// and returns its number. The node is neither a member nor running yet.
    pub fn add_node_directory(&mut self) -> usize {
        let node = self.size + 1;
        let port = free_port_range(1);
        self.size = node;
        self.ports.push(port);
        self.nodes.push(None);
        self.node_env.push(Vec::new());
        let address = self.node_address(node);
        self.cluster_add_node(node, &address).expect_ok();
        node
    }

    /// Runs `vault-cli cluster add-node --dir DIR --id node<node> --addr
    /// <address>` as it is, for tests of its refusals and of reusing an id.
    pub fn cluster_add_node(&self, node: usize, address: &str) -> CliResult {
        let dir = self.dir.path().to_string_lossy();
        let id = format!("node{node}");
        run_cli(&[
            "cluster", "add-node", "--dir", &dir, "--id", &id, "--addr", address,
        ])
    }

    /// Removes node `node`'s data directory (`DIR/node<node>/data`), as a
    /// lost or replaced disk would. The node must not be running.
    pub fn wipe_data(&self, node: usize) {
        assert!(!self.is_running(node), "node{node} is running");
        std::fs::remove_dir_all(self.node_dir(node).join("data")).expect("wipe the data directory");
    }

    /// Removes node `node`'s whole directory (certificate, config, data,
    /// log), which `cluster add-node` refuses to overwrite when an id is
    /// reused. The node must not be running.
    pub fn remove_node_directory(&self, node: usize) {
        assert!(!self.is_running(node), "node{node} is running");
        std::fs::remove_dir_all(self.node_dir(node)).expect("remove the node directory");
    }

    /// `member <args> --json` through the client configuration `config`.
    pub fn member(&self, config: &Path, args: &[&str]) -> CliResult {
        let mut full = vec!["member"];
        full.extend_from_slice(args);
        self.cli_as(config, &full, None)
    }

    /// `member list --json` through `config`, or `None` if the command
    /// fails (no leader yet, say). Panics if the document does not have the
    /// shape of SPEC §8: that is a bug, not something to wait out.
    pub fn member_list(&self, config: &Path) -> Option<Vec<Member>> {
        let result = self.member(config, &["list"]);
        if result.code != 0 {
            return None;
        }
        let members = parse_member_list(&result.json())
            .unwrap_or_else(|error| panic!("member list --json: {error}"));
        Some(members)
    }

    /// Runs `cluster add-node`, `member add` (through `config`) and starts
    /// the new node; returns its number once `member add` has answered.
    pub fn join_new_node(&mut self, config: &Path) -> usize {
        let node = self.add_node_directory();
        let id = format!("node{node}");
        let address = self.node_address(node);
        let added = self
            .member(config, &["add", &id, "--addr", &address])
            .expect_ok()
            .json();
        assert_eq!(
            added,
            serde_json::json!({"id": id, "addr": address, "role": "learner"}),
            "member add --json"
        );
        self.start_node(node);
        node
    }

    /// Waits until `member list` (through `config`) shows `node` as a
    /// voter, and returns that list.
    pub fn wait_for_voter(&self, config: &Path, node: usize) -> Vec<Member> {
        let id = format!("node{node}");
        self.eventually(&format!("{id} becomes a voter"), || {
            let members = self.member_list(config)?;
            members
                .iter()
                .any(|member| member.id == id && member.is_voter())
                .then_some(members)
        })
    }

    /// `status --json` asking only `nodes` (with a short client timeout),
    /// as parsed JSON; `None` if the command fails.
    pub fn status_of(&self, nodes: &[usize]) -> Option<Value> {
        let name = format!("status-{}.toml", join_numbers(nodes));
        let config = self.write_client_config(&name, &ClientIdentity::dir("admin"), nodes, Some(5));
        let result = self.cli_as(&config, &["status"], None);
        (result.code == 0).then(|| result.json())
    }

    /// What each of `nodes` says of itself in one `status`, by node
    /// number, or `None` unless every one of them answered.
    pub fn views_of(&self, nodes: &[usize]) -> Option<BTreeMap<usize, NodeView>> {
        let status = self.status_of(nodes)?;
        let mut views = BTreeMap::new();
        for row in status["nodes"].as_array()? {
            if row["reachable"] != Value::Bool(true) {
                return None;
            }
            let number = node_number(row["id"].as_str()?)?;
            let leader = row["leader"].as_str().and_then(node_number);
            let view = NodeView {
                role: row["role"].as_str()?.to_string(),
                term: row["term"].as_u64()?,
                leader,
            };
            views.insert(number, view);
        }
        Some(views)
    }

    /// Waits until every node of `nodes` names the same leader, itself one
    /// of `nodes` that calls itself leader, and returns its number. Nodes
    /// outside `nodes` (a removed one still running, say) are not asked.
    pub fn wait_for_leader_among(&self, nodes: &[usize]) -> usize {
        self.eventually(&format!("one leader agreed by {nodes:?}"), || {
            let views = self.views_of(nodes)?;
            let leader = views.values().next()?.leader?;
            let agreed = views.values().all(|view| view.leader == Some(leader));
            let says = views.get(&leader).is_some_and(|view| view.role == "leader");
            (agreed && says).then_some(leader)
        })
    }
}

fn join_numbers(nodes: &[usize]) -> String {
    let numbers: Vec<String> = nodes.iter().map(usize::to_string).collect();
    numbers.join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_member_list_of_the_spec_shape_parses() {
        let document = json!({"members": [
            {"id": "node1", "addr": "127.0.0.1:7001", "role": "voter", "leader": true,
             "reachable": true, "match_index": 12},
            {"id": "node4", "addr": "127.0.0.1:7004", "role": "learner", "leader": false,
             "reachable": false, "match_index": 0},
        ]});
        let members = parse_member_list(&document).unwrap();
        assert_eq!(members.len(), 2);
        assert!(members[0].is_voter() && members[0].leader);
        assert_eq!(members[1].role, "learner");
        assert_eq!(members[0].match_index, 12);
    }

    #[test]
    fn a_missing_extra_or_mistyped_field_is_refused() {
        let good = json!({"id": "node1", "addr": "a:1", "role": "voter", "leader": true,
                          "reachable": true, "match_index": 1});
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("match_index");
        let mut extra = good.clone();
        extra["term"] = json!(3);
        let mut mistyped = good.clone();
        mistyped["leader"] = json!("yes");
        let mut bad_role = good.clone();
        bad_role["role"] = json!("follower");
        for row in [missing, extra, mistyped, bad_role] {
            assert!(Member::from_json(&row).is_err(), "{row}");
        }
        assert!(parse_member_list(&json!({"members": [good], "leader": "node1"})).is_err());
    }
}
