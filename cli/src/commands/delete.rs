//! `delete NAME`: a two-phase commit across every node (SPEC §6); the
//! node reached coordinates it.

use crate::exit::{ExitCode, Failure};
use crate::session::Session;
use anyhow::Result;
use serde_json::json;
use vault::protocol::{Decision, Request, Response, Vote};

/// Prints `{"tx","decision","votes","acked"}` (also on an abort, as the
/// one `--json` document) and exits 5 when the transaction aborted,
/// naming each participant that voted abort and why.
pub async fn run(session: &Session, name: &str) -> Result<()> {
    crate::session::check_name(name)?;
    let response = session
        .call(Request::Delete {
            name: name.to_string(),
        })
        .await?;
    let Response::Deleted(report) = response else {
        anyhow::bail!("unexpected answer to delete: {response:?}");
    };
    let decision = match report.decision {
        Decision::Commit => "commit",
        Decision::Abort => "abort",
    };
    let vote_text = |vote: &Vote| match vote {
        Vote::Commit => "commit",
        Vote::Abort(_) => "abort",
    };
    // Each participant that voted abort, and why: its own reason, or that
    // it did not answer in time or could not be reached.
    let reasons: Vec<(String, &str)> = report
        .votes
        .iter()
        .filter_map(|(node, vote)| match vote {
            Vote::Abort(reason) => Some((node.to_string(), reason.as_str())),
            Vote::Commit => None,
        })
        .collect();
    let votes: serde_json::Map<String, serde_json::Value> = report
        .votes
        .iter()
        .map(|(node, vote)| (node.to_string(), json!(vote_text(vote))))
        .collect();
    let acked: Vec<String> = report.acked.iter().map(ToString::to_string).collect();
    crate::render::print(
        session.json,
        // Exactly the keys of SPEC §8; each abort's reason goes into the error
        // sentence on stderr.
        json!({ "tx": report.tx, "decision": decision, "votes": votes, "acked": acked }),
        || {
            let mut text = format!("transaction {}: {}\n", report.tx, decision.to_uppercase());
            for (node, vote) in &report.votes {
                match vote {
                    Vote::Abort(reason) => {
                        text.push_str(&format!("  {node} voted {}: {reason}\n", vote_text(vote)))
                    }
                    Vote::Commit => text.push_str(&format!("  {node} voted {}\n", vote_text(vote))),
                }
            }
            text.push_str(&format!("  acknowledged by: {}\n", acked.join(", ")));
            text
        },
    );
    if report.decision == Decision::Abort {
        let why: Vec<String> = reasons
            .iter()
            .map(|(node, reason)| format!("{node}: {reason}"))
            .collect();
        let why = if why.is_empty() {
            "not every node voted to commit".to_string()
        } else {
            why.join("; ")
        };
        // The report above is the one `--json` document; the error sentence
        // goes to stderr only.
        return Err(Failure::after_json(
            ExitCode::Aborted,
            format!("deleting {name} aborted: {why}"),
        )
        .into());
    }
    Ok(())
}
