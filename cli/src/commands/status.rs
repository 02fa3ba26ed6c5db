//! `status`: every node's role, term and progress (admin only).

use crate::exit::{ExitCode, Failure};
use crate::render::cell;
use crate::session::Session;
use anyhow::Result;
use consensus::raft::NodeId;
use serde_json::json;
use vault::protocol::{Request, Response};

/// Asks every node about itself, in parallel; a node that does not answer
/// is shown as unreachable. No node answering at all is exit 6.
pub async fn run(session: &Session) -> Result<()> {
    let queries = session
        .client
        .nodes()
        .iter()
        .map(|(id, address)| async move {
            let reply = session.client.call_node(*id, Request::Status).await;
            (*id, address.address.to_string(), reply)
        });
    let answers = futures::future::join_all(queries).await;
    let mut nodes = Vec::new();
    let mut unreachable = None;
    for (id, address, reply) in answers {
        if let Err(error @ vault::protocol::VaultError::PermissionDenied(_)) = reply {
            return Err(Failure::from(error).into());
        }
        match status_row(id, &address, &reply) {
            Ok(row) => nodes.push(row),
            Err(reason) => {
                unreachable.get_or_insert(reason);
                nodes.push(json!({
                    "id": id.to_string(), "addr": address, "role": "unknown", "term": null,
                    "leader": null, "commit_index": null, "applied_index": null, "reachable": false,
                }));
            }
        }
    }
    // No node answered at all: the cluster is unavailable to us (down, or
    // our certificate is refused), which is exit code 6, not a table of
    // unreachable nodes with exit code 0.
    if let (true, Some(reason)) = (
        nodes.iter().all(|node| node["reachable"] == false),
        unreachable,
    ) {
        return Err(Failure::new(
            ExitCode::Unavailable,
            format!("no node answered status: {reason}"),
        )
        .into());
    }
    crate::render::print(session.json, json!({ "nodes": nodes }), || table(&nodes));
    Ok(())
}

/// The text form of `status`: one row per node, then why any refuses writes.
fn table(nodes: &[serde_json::Value]) -> String {
    let columns = [
        "id",
        "addr",
        "role",
        "term",
        "leader",
        "commit_index",
        "applied_index",
    ];
    let row = |cells: [String; 7]| {
        format!(
            "{:<8} {:<22} {:<14} {:>6} {:<8} {:>8} {:>8}\n",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6]
        )
    };
    let mut text = row([
        "NODE", "ADDRESS", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED",
    ]
    .map(str::to_string));
    for node in nodes {
        text.push_str(&row(columns.map(|key| cell(&node[key]))));
    }
    for node in nodes {
        if let serde_json::Value::String(reason) = &node["writes_refused"] {
            text.push_str(&format!(
                "{} refuses writes: {reason}\n",
                node["id"].as_str().unwrap_or("?")
            ));
        }
    }
    text
}

/// One node's row of `status`, or why it has none.
fn status_row(
    id: NodeId,
    address: &str,
    reply: &vault::protocol::Reply,
) -> std::result::Result<serde_json::Value, String> {
    match reply {
        Ok(Response::Status(report)) if !report.nodes.is_empty() => {
            let node = &report.nodes[0];
            Ok(json!({
                "id": node.id.to_string(),
                "addr": address,
                "role": node.role,
                "term": node.term,
                "leader": node.leader.map(|leader| leader.to_string()),
                "commit_index": node.commit_index,
                "applied_index": node.applied_index,
                "reachable": true,
                "writes_refused": node.writes_refused,
            }))
        }
        Ok(_) => Err(format!("{id} gave no status")),
        Err(error) => Err(error.to_string()),
    }
}
