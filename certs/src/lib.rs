//! The cluster's PKI: a CA, node and client certificates, rustls configs.
#![warn(missing_docs)]
