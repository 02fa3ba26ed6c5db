//! `list [--shared]`: the names and versions of our secrets, or of the
//! secrets others shared with us. Nothing is decrypted.

use crate::args::ListArgs;
use crate::session::Session;
use anyhow::Result;
use serde_json::json;
use vault::protocol::{Request, Response};

/// Lists ours (`{"secrets":[{"name","version"}]}`) or, with `--shared`,
/// those shared with us (`{"secrets":[{"owner","name","version"}]}`).
pub async fn run(session: &Session, args: &ListArgs) -> Result<()> {
    if args.shared {
        return shared(session).await;
    }
    let response = session.call(Request::List { stale: false }).await?;
    let Response::Secrets(secrets) = response else {
        anyhow::bail!("unexpected answer to list: {response:?}");
    };
    let rows: Vec<_> = secrets
        .iter()
        .map(|secret| json!({ "name": secret.name, "version": secret.version }))
        .collect();
    crate::render::print(session.json, json!({ "secrets": rows }), || {
        if secrets.is_empty() {
            return "no secrets".to_string();
        }
        secrets
            .iter()
            .map(|secret| format!("{} (version {})\n", secret.name, secret.version))
            .collect()
    });
    Ok(())
}

async fn shared(session: &Session) -> Result<()> {
    let response = session.call(Request::ListShared { stale: false }).await?;
    let Response::SharedSecrets(secrets) = response else {
        anyhow::bail!("unexpected answer to list --shared: {response:?}");
    };
    let rows: Vec<_> = secrets
        .iter()
        .map(|secret| json!({ "owner": secret.owner, "name": secret.name, "version": secret.version }))
        .collect();
    crate::render::print(session.json, json!({ "secrets": rows }), || {
        if secrets.is_empty() {
            return "nothing is shared with you".to_string();
        }
        secrets
            .iter()
            .map(|secret| {
                format!(
                    "{} (version {}) from {}   read it with: get-secret {} --owner {}\n",
                    secret.name, secret.version, secret.owner, secret.name, secret.owner
                )
            })
            .collect()
    });
    Ok(())
}
