//! `member list`, `member add`, `member remove` (SPEC §8, §13): admin
//! requests the leader serves (a follower forwards them).

use crate::args::MemberCommand;
use crate::cluster_add_node::split_host_port;
use crate::exit::Failure;
use crate::session::Session;
use anyhow::Result;
use consensus::raft::NodeId;
use serde_json::json;
use vault::protocol::{MemberInfo, Request, Response};

/// Runs one `member` subcommand.
pub async fn run(session: &Session, command: &MemberCommand) -> Result<()> {
    match command {
        MemberCommand::List => list(session).await,
        MemberCommand::Add { id, addr } => {
            let id = parse_id(id)?;
            // A malformed address is a usage error (exit 2), as it is for
            // `cluster add-node` and as a malformed id is here; the node's
            // own check would answer it as a refusal, which exits 4
            // ("conflict").
            split_host_port(addr)
                .map_err(|error| Failure::new(crate::exit::ExitCode::Usage, error))?;
            add(session, id, addr).await
        }
        MemberCommand::Remove { id } => remove(session, parse_id(id)?).await,
    }
}

fn parse_id(text: &str) -> Result<NodeId> {
    text.parse::<NodeId>()
        .map_err(|error| Failure::new(crate::exit::ExitCode::Usage, error.to_string()).into())
}

async fn call(session: &Session, request: Request, avoid: Option<NodeId>) -> Result<Response> {
    session
        .client
        .call_avoiding(request, avoid)
        .await
        .map_err(|error| Failure::from(error).into())
}

fn role(member: &MemberInfo) -> &'static str {
    if member.voter {
        "voter"
    } else {
        "learner"
    }
}

async fn list(session: &Session) -> Result<()> {
    let response = call(session, Request::MemberList, None).await?;
    let Response::Members(members) = response else {
        anyhow::bail!("unexpected answer to member list: {response:?}");
    };
    let rows: Vec<_> = members
        .iter()
        .map(|member| {
            json!({
                "id": member.id.to_string(),
                "addr": member.addr,
                "role": role(member),
                "leader": member.leader,
                "reachable": member.reachable,
                "match_index": member.match_index,
            })
        })
        .collect();
    crate::render::print(session.json, json!({ "members": rows }), || {
        let mut text = format!(
            "{:<8} {:<24} {:<8} {:<7} {:<10} {:>10}  PROGRESS\n",
            "ID", "ADDRESS", "ROLE", "LEADER", "REACHABLE", "MATCH"
        );
        for member in &members {
            let progress = match member.snapshot_bytes {
                Some(bytes) => format!("receiving a snapshot: {:.1} MB", bytes as f64 / 1e6),
                None if member.voter => String::new(),
                None => "catching up; promoted to voter once caught up".to_string(),
            };
            text.push_str(&format!(
                "{:<8} {:<24} {:<8} {:<7} {:<10} {:>10}  {progress}\n",
                member.id.to_string(),
                member.addr,
                role(member),
                if member.leader { "yes" } else { "no" },
                if member.reachable { "yes" } else { "no" },
                member.match_index,
            ));
        }
        text
    });
    Ok(())
}

async fn add(session: &Session, id: NodeId, addr: &str) -> Result<()> {
    let request = Request::MemberAdd {
        id,
        addr: addr.to_string(),
    };
    let response = call(session, request, None).await?;
    let Response::MemberAdded(member) = response else {
        anyhow::bail!("unexpected answer to member add: {response:?}");
    };
    crate::render::print(
        session.json,
        json!({ "id": member.id.to_string(), "addr": member.addr, "role": role(&member) }),
        || {
            format!(
                "{} added at {} as a {}; start it with `vault-cli node run --config {}/node.toml` \
                 and it becomes a voter once it has caught up (see `vault-cli member list`)",
                member.id,
                member.addr,
                role(&member),
                member.id
            )
        },
    );
    Ok(())
}

async fn remove(session: &Session, id: NodeId) -> Result<()> {
    let response = call(session, Request::MemberRemove { id }, Some(id)).await?;
    let Response::MemberRemoved { id } = response else {
        anyhow::bail!("unexpected answer to member remove: {response:?}");
    };
    crate::render::print(session.json, json!({ "id": id.to_string() }), || {
        format!("{id} removed from the cluster; its certificate is no longer accepted")
    });
    Ok(())
}
