//! Support for black-box tests that start real `vault-cli` processes.
