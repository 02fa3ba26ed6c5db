//! `whoami`: who this client is, whether it is an admin, and the
//! fingerprint of its published key (to compare with what `share` shows).

use crate::identity::unlock;
use crate::session::Session;
use anyhow::Result;
use serde_json::json;
use vault::crypto::fingerprint;

/// Checks the passphrase (publishing a new identity's record on first use)
/// and prints `{"identity","admin","fingerprint"}`.
pub async fn run(session: &Session) -> Result<()> {
    let keyring = unlock(session, false).await?;
    let shown = fingerprint(&keyring.public_key());
    let admin = session.owner.starts_with("admin:");
    crate::render::print(
        session.json,
        json!({ "identity": session.owner, "admin": admin, "fingerprint": shown }),
        || {
            format!(
                "identity:    {}\nadmin:       {}\nfingerprint: {shown}",
                session.owner,
                if admin { "yes" } else { "no" }
            )
        },
    );
    Ok(())
}
