//! `add-secret NAME`: seal the fields on the client and store them as a new
//! secret, or with `--update` as the next version (SPEC §5).

use crate::args::AddSecretArgs;
use crate::identity::{crypto_failure, unlock};
use crate::session::Session;
use anyhow::Result;
use serde_json::json;
use vault::crypto::SecretFields;
use vault::protocol::{Request, Response};

/// The passphrase is checked (and a new identity's record published) before
/// anything is sealed. An update reads the current version first, checks it
/// is ours, keeps every field not given (like `vault kv patch`), and is
/// sealed as the next version under the same data key, so shares stay valid.
pub async fn run(session: &Session, args: &AddSecretArgs) -> Result<()> {
    crate::session::check_name(&args.name)?;
    let mut given = crate::fields_input::read_fields(args)?;
    if args.generate {
        given.password = Some(crate::generate::password(args.length, !args.no_symbols)?);
    }
    let keyring = unlock(session, false).await?;
    let (sealed, version, fields) = if args.update {
        let previous = session
            .read_secret(&session.owner, &args.name, None, false)
            .await?;
        let kept = keyring.open(&previous, None).map_err(crypto_failure)?;
        let fields = merge(kept, given);
        let sealed = keyring.reseal(&previous, &fields).map_err(crypto_failure)?;
        (sealed, previous.version + 1, fields)
    } else {
        let sealed = keyring
            .seal(&args.name, 1, &given)
            .map_err(crypto_failure)?;
        (sealed, 1, given)
    };
    if fields.password.is_none() {
        eprintln!(
            "warning: {} has no password (give one with --password-stdin, --generate, or at the prompt)",
            args.name
        );
    }
    let response = session
        .call(Request::AddSecret {
            name: args.name.clone(),
            sealed,
            update: args.update,
            version,
        })
        .await?;
    let Response::Added { version } = response else {
        anyhow::bail!("unexpected answer to add-secret: {response:?}");
    };
    let generated = args.generate.then_some(()).and(fields.password.as_deref());
    crate::render::print(
        session.json,
        match generated {
            Some(password) => {
                json!({ "name": args.name, "version": version, "password": password })
            }
            None => json!({ "name": args.name, "version": version }),
        },
        || match generated {
            Some(password) => format!(
                "stored {} (version {version})\ngenerated password: {password}",
                args.name
            ),
            None => format!("stored {} (version {version})", args.name),
        },
    );
    Ok(())
}

/// The fields of an update: each one given replaces the kept one, each one
/// not given is kept. An empty password at the prompt means "not given".
fn merge(kept: SecretFields, given: SecretFields) -> SecretFields {
    let pick = |given: &Option<String>, kept: &Option<String>| given.clone().or(kept.clone());
    let given_password = given
        .password
        .clone()
        .filter(|password| !password.is_empty());
    SecretFields {
        username: pick(&given.username, &kept.username),
        password: pick(&given_password, &kept.password),
        url: pick(&given.url, &kept.url),
        note: pick(&given.note, &kept.note),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(username: &str, password: &str, url: &str, note: &str) -> SecretFields {
        let some = |text: &str| (!text.is_empty()).then(|| text.to_string());
        SecretFields {
            username: some(username),
            password: some(password),
            url: some(url),
            note: some(note),
        }
    }

    #[test]
    fn an_update_keeps_every_field_it_is_not_given() {
        let kept = fields("alice", "old", "https://mail", "recovery codes in the safe");
        let merged = merge(kept, fields("", "new", "", ""));
        assert_eq!(
            merged,
            fields("alice", "new", "https://mail", "recovery codes in the safe")
        );
        let kept = fields("alice", "old", "https://mail", "n");
        let merged = merge(kept, fields("bob", "", "", "m"));
        assert_eq!(merged, fields("bob", "old", "https://mail", "m"));
    }

    #[test]
    fn an_empty_password_at_the_prompt_keeps_the_old_one() {
        let kept = fields("", "old", "", "");
        let mut given = SecretFields::default();
        given.password = Some(String::new());
        assert_eq!(merge(kept, given).password.as_deref(), Some("old"));
    }
}
