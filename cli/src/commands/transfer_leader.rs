//! `transfer-leader [--to ID]`: hand leadership to a node (admin only).

use crate::exit::{ExitCode, Failure};
use crate::session::Session;
use anyhow::Result;
use consensus::raft::NodeId;
use serde_json::json;
use vault::protocol::{Request, Response};

/// Asks the leader to hand over to `to`, or to its most up-to-date
/// follower, and prints `{"leader"}` once it has.
pub async fn run(session: &Session, to: Option<&str>) -> Result<()> {
    let to = to
        .map(str::parse::<NodeId>)
        .transpose()
        .map_err(|error| Failure::new(ExitCode::Usage, error.to_string()))?;
    let response = session.call(Request::TransferLeader { to }).await?;
    let Response::LeaderTransferred { leader } = response else {
        anyhow::bail!("unexpected answer to transfer-leader: {response:?}");
    };
    crate::render::print(
        session.json,
        json!({ "leader": leader.to_string() }),
        || format!("{leader} is now the leader"),
    );
    Ok(())
}
