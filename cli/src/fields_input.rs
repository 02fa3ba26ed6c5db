//! Where the fields of `add-secret` come from, so that no secret ever has
//! to be on the command line (SPEC §4): a flag's value `-` reads that field
//! from standard input, or from a hidden prompt on a terminal.

use crate::args::AddSecretArgs;
use crate::exit::Failure;
use anyhow::{Context, Result};
use std::io::{IsTerminal, Read};
use vault::crypto::SecretFields;

/// The value of a field flag that means "read it, do not take it from here".
const FROM_INPUT: &str = "-";

/// The fields of `args`, reading each `-` field and the password as the
/// flags say. Standard input can carry one value only, so more than one of
/// `--password-stdin`, `--username -`, `--url -`, `--note -` is a usage
/// error unless standard input is a terminal (then each is a prompt).
pub fn read_fields(args: &AddSecretArgs) -> Result<SecretFields> {
    let terminal = std::io::stdin().is_terminal();
    let flags = [
        ("username", &args.username),
        ("url", &args.url),
        ("note", &args.note),
    ];
    let from_input = flags
        .iter()
        .filter(|(_, value)| value.as_deref() == Some(FROM_INPUT))
        .count()
        + usize::from(args.password_stdin);
    if from_input > 1 && !terminal {
        return Err(Failure::new(
            crate::exit::ExitCode::Usage,
            "only one of --password-stdin, --username -, --url - and --note - can read standard input",
        )
        .into());
    }
    let field = |label: &str, value: &Option<String>| -> Result<Option<String>> {
        match value.as_deref() {
            Some(FROM_INPUT) if terminal => Ok(Some(
                rpassword::prompt_password(format!("{label} for {}: ", args.name))
                    .with_context(|| format!("cannot read the {label}"))?,
            )),
            Some(FROM_INPUT) => read_stdin(label).map(Some),
            other => Ok(other.map(str::to_string)),
        }
    };
    let password = if args.password_stdin {
        Some(read_stdin("password")?)
    } else if terminal && !args.generate {
        let hint = if args.update { " (empty: keep it)" } else { "" };
        Some(rpassword::prompt_password(format!(
            "Password for {}{hint}: ",
            args.name
        ))?)
    } else {
        None
    };
    Ok(SecretFields {
        username: field("username", &args.username)?,
        password,
        url: field("url", &args.url)?,
        note: field("note", &args.note)?,
    })
}

/// All of standard input, without its final line break.
fn read_stdin(label: &str) -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the {label} from standard input"))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}
