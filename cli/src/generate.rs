//! `add-secret --generate`: a password made on the client from the
//! operating system's randomness (like `pass generate`), never by a node.

use crate::exit::{ExitCode, Failure};
use anyhow::Result;
use rand::rngs::OsRng;
use rand::Rng;

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &[u8] = b"0123456789";
/// Printable ASCII punctuation that survives shells and most web forms.
const SYMBOLS: &[u8] = b"!#$%&()*+,-./:;<=>?@[]^_{}~";

/// The shortest and longest password `--length` may ask for.
pub const LENGTHS: std::ops::RangeInclusive<usize> = 8..=1024;

/// A password of `length` characters drawn uniformly from letters, digits
/// and (unless `symbols` is false) punctuation, holding at least one
/// character of each class so that sites with composition rules accept it.
pub fn password(length: usize, symbols: bool) -> Result<String> {
    if !LENGTHS.contains(&length) {
        return Err(Failure::new(
            ExitCode::Usage,
            format!(
                "--length must be between {} and {}, not {length}",
                LENGTHS.start(),
                LENGTHS.end()
            ),
        )
        .into());
    }
    let mut classes = vec![LOWER, UPPER, DIGITS];
    if symbols {
        classes.push(SYMBOLS);
    }
    let alphabet: Vec<u8> = classes.concat();
    // Rejecting whole draws that miss a class keeps every accepted
    // password uniform among those that have all classes; with 8 or more
    // characters a draw is accepted more than half the time.
    loop {
        let candidate: Vec<u8> = (0..length)
            .map(|_| alphabet[OsRng.gen_range(0..alphabet.len())])
            .collect();
        if classes
            .iter()
            .all(|class| candidate.iter().any(|byte| class.contains(byte)))
        {
            return Ok(String::from_utf8(candidate).unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_have_the_length_and_classes_asked_for() {
        for _ in 0..200 {
            let with = password(24, true).expect("generated");
            assert_eq!(with.len(), 24);
            assert!(with.bytes().any(|b| SYMBOLS.contains(&b)), "{with}");
            assert!(with.bytes().any(|b| b.is_ascii_digit()), "{with}");
            assert!(with.bytes().any(|b| b.is_ascii_uppercase()), "{with}");
            assert!(with.bytes().any(|b| b.is_ascii_lowercase()), "{with}");
            let without = password(8, false).expect("generated");
            assert_eq!(without.len(), 8);
            assert!(
                without.bytes().all(|b| b.is_ascii_alphanumeric()),
                "{without}"
            );
        }
    }

    #[test]
    fn two_passwords_differ() {
        assert_ne!(password(24, true).unwrap(), password(24, true).unwrap());
    }

    #[test]
    fn a_length_out_of_range_is_a_usage_error() {
        for length in [0, 7, 1025] {
            let error = password(length, true).unwrap_err();
            assert_eq!(crate::exit::code_for(&error), 2, "{length}");
        }
    }
}
