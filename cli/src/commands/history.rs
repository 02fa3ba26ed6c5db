//! `history NAME [--owner USER]`: the versions kept of a secret (SPEC §5,
//! `[vault] max_versions`), oldest first. Nothing is decrypted.

use crate::args::HistoryArgs;
use crate::session::{qualify_identity, Session};
use anyhow::Result;
use serde_json::json;
use vault::protocol::{Request, Response};

/// Prints `{"name","versions":[{"version","updated"}]}`, `updated` as an
/// RFC 3339 time in UTC.
pub async fn run(session: &Session, args: &HistoryArgs) -> Result<()> {
    crate::session::check_name(&args.name)?;
    let owner = args
        .owner
        .as_deref()
        .map(qualify_identity)
        .filter(|owner| *owner != session.owner);
    let response = session
        .call(Request::History {
            owner,
            name: args.name.clone(),
            stale: false,
        })
        .await?;
    let Response::History { name, versions } = response else {
        anyhow::bail!("unexpected answer to history: {response:?}");
    };
    if name != args.name {
        anyhow::bail!("the node answered with the history of another secret ({name:?})");
    }
    let rows: Vec<_> = versions
        .iter()
        .map(|version| {
            json!({ "version": version.version, "updated": crate::render::time(version.updated_ms) })
        })
        .collect();
    crate::render::print(
        session.json,
        json!({ "name": name, "versions": rows }),
        || {
            let mut text = format!("{:<8} {}\n", "VERSION", "UPDATED");
            for version in &versions {
                text.push_str(&format!(
                    "{:<8} {}\n",
                    version.version,
                    crate::render::time(version.updated_ms)
                ));
            }
            text
        },
    );
    Ok(())
}
