//! Tests of the PKI: every trust decision has a test that shows it refusing
//! (in the manner of quinn's `reject_missing_client_cert`).
//!
//! Handshakes run in memory between a rustls client and server connection,
//! so they exercise exactly the configs the transport hands to quinn.

use super::*;
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

struct Cluster {
    ca: CertificateAuthority,
    node: IssuedCertificate,
    client: IssuedCertificate,
}

fn cluster() -> Cluster {
    let ca = CertificateAuthority::generate("test CA").unwrap();
    let node = ca
        .issue_node("node1", &["127.0.0.1".into(), "vault1.example".into()])
        .unwrap();
    let client = ca
        .issue_client(&Identity::client("alice").unwrap())
        .unwrap();
    Cluster { ca, node, client }
}

fn credentials(ca: &CertificateAuthority, issued: &IssuedCertificate) -> Credentials {
    Credentials::from_pem(
        ca.certificate_pem(),
        &issued.certificate_pem,
        issued.key_pem(),
    )
    .unwrap()
}

/// Runs a handshake to completion; returns both connections or the first
/// error either side raised.
fn handshake(
    client: ClientConfig,
    server: ServerConfig,
    server_name: &str,
) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let mut client = ClientConnection::new(Arc::new(client), name)?;
    let mut server = ServerConnection::new(Arc::new(server))?;
    // A TLS 1.3 handshake needs two round trips; a few more are harmless and
    // bound the loop if something never completes.
    for _ in 0..8 {
        let mut buffer = Vec::new();
        client.write_tls(&mut buffer).unwrap();
        server.read_tls(&mut buffer.as_slice()).unwrap();
        server.process_new_packets()?;
        let mut buffer = Vec::new();
        server.write_tls(&mut buffer).unwrap();
        client.read_tls(&mut buffer.as_slice()).unwrap();
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok((client, server));
        }
    }
    panic!("handshake did not complete");
}

fn peer_identity(certificates: Option<&[CertificateDer<'_>]>) -> Identity {
    Identity::from_certificate(&certificates.expect("peer certificates")[0]).unwrap()
}

#[test]
fn mutual_tls_succeeds_and_each_side_learns_the_other_identity() {
    let cluster = cluster();
    let server = credentials(&cluster.ca, &cluster.node)
        .server_config()
        .unwrap();
    let client = credentials(&cluster.ca, &cluster.client)
        .client_config()
        .unwrap();
    let (client, server) = handshake(client, server, "127.0.0.1").unwrap();
    assert_eq!(
        peer_identity(server.peer_certificates()),
        Identity::Client("alice".into())
    );
    assert_eq!(
        peer_identity(client.peer_certificates()),
        Identity::Node("node1".into())
    );
    assert_eq!(server.alpn_protocol(), Some(ALPN_PROTOCOL));
    assert_eq!(
        server.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[test]
fn node_to_node_handshake_uses_dns_names_too() {
    let cluster = cluster();
    let other = cluster
        .ca
        .issue_node("node2", &["127.0.0.2".into()])
        .unwrap();
    let server = credentials(&cluster.ca, &cluster.node)
        .server_config()
        .unwrap();
    let client = credentials(&cluster.ca, &other).client_config().unwrap();
    let (_, server) = handshake(client, server, "vault1.example").unwrap();
    assert_eq!(
        peer_identity(server.peer_certificates()),
        Identity::Node("node2".into())
    );
}

#[test]
fn reject_missing_client_cert() {
    let cluster = cluster();
    let server = credentials(&cluster.ca, &cluster.node)
        .server_config()
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cluster.ca.certificate_pem().as_bytes()).unwrap())
        .unwrap();
    let anonymous =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let mut anonymous = anonymous;
    anonymous.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
    let error = handshake(anonymous, server, "127.0.0.1").expect_err("refused");
    assert_eq!(error, rustls::Error::NoCertificatesPresented);
}

#[test]
fn reject_client_cert_from_a_foreign_ca() {
    let cluster = cluster();
    let foreign_ca = CertificateAuthority::generate("foreign CA").unwrap();
    let foreign = foreign_ca
        .issue_client(&Identity::client("alice").unwrap())
        .unwrap();
    // The intruder trusts our CA (it is public) but its own cert is foreign.
    let intruder = Credentials::from_pem(
        cluster.ca.certificate_pem(),
        &foreign.certificate_pem,
        foreign.key_pem(),
    )
    .unwrap();
    let server = credentials(&cluster.ca, &cluster.node)
        .server_config()
        .unwrap();
    let error =
        handshake(intruder.client_config().unwrap(), server, "127.0.0.1").expect_err("refused");
    assert!(
        matches!(
            error,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{error:?}"
    );
}

#[test]
fn reject_server_cert_from_a_foreign_ca() {
    let cluster = cluster();
    let foreign_ca = CertificateAuthority::generate("foreign CA").unwrap();
    let impostor = foreign_ca
        .issue_node("node1", &["127.0.0.1".into()])
        .unwrap();
    let server = Credentials::from_pem(
        foreign_ca.certificate_pem(),
        &impostor.certificate_pem,
        impostor.key_pem(),
    )
    .unwrap()
    .server_config()
    .unwrap();
    let client = credentials(&cluster.ca, &cluster.client)
        .client_config()
        .unwrap();
    let error = handshake(client, server, "127.0.0.1").expect_err("refused");
    assert!(
        matches!(
            error,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{error:?}"
    );
}

#[test]
fn reject_server_whose_sans_do_not_match_the_name_dialled() {
    let cluster = cluster();
    let server = credentials(&cluster.ca, &cluster.node)
        .server_config()
        .unwrap();
    let client = credentials(&cluster.ca, &cluster.client)
        .client_config()
        .unwrap();
    for wrong in ["127.0.0.2", "vault2.example"] {
        let error = handshake(client.clone(), server.clone(), wrong).expect_err("refused");
        assert!(
            matches!(
                error,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{wrong}: {error:?}"
        );
    }
}

#[test]
fn reject_client_certificate_acting_as_a_server() {
    let cluster = cluster();
    // A client cert has clientAuth only, so it cannot impersonate a node
    // even if an attacker serves it on a node's address.
    let server = credentials(&cluster.ca, &cluster.client)
        .server_config()
        .unwrap();
    let client = credentials(&cluster.ca, &cluster.node)
        .client_config()
        .unwrap();
    let error = handshake(client, server, "127.0.0.1").expect_err("refused");
    assert!(
        matches!(error, rustls::Error::InvalidCertificate(_)),
        "{error:?}"
    );
}

#[test]
fn reject_a_peer_without_the_vault_alpn() {
    let cluster = cluster();
    let server = credentials(&cluster.ca, &cluster.node)
        .server_config()
        .unwrap();
    let mut client = credentials(&cluster.ca, &cluster.client)
        .client_config()
        .unwrap();
    client.alpn_protocols = vec![b"h3".to_vec()];
    let error = handshake(client, server, "127.0.0.1").expect_err("refused");
    assert_eq!(error, rustls::Error::NoApplicationProtocol);
}

#[test]
fn identities_of_each_kind_are_read_from_certificates() {
    let ca = CertificateAuthority::generate("test CA").unwrap();
    let node = ca.issue_node("node3", &["10.0.0.3".into()]).unwrap();
    let client = ca.issue_client(&Identity::client("bob").unwrap()).unwrap();
    let admin = ca.issue_client(&Identity::admin("ops").unwrap()).unwrap();
    for (issued, expected) in [
        (&node, Identity::Node("node3".into())),
        (&client, Identity::Client("bob".into())),
        (&admin, Identity::Admin("ops".into())),
    ] {
        assert_eq!(issued.identity, expected);
        assert_eq!(credentials(&ca, issued).identity(), &expected);
    }
    assert!(matches!(
        ca.issue_client(&Identity::node("node1").unwrap()),
        Err(CertsError::NodeIdentityForClient)
    ));
    for bad in [
        "",
        "node",
        "node0",
        "node01",
        "3",
        "leader",
        "node-1",
        "node99999999999999999999",
    ] {
        assert!(
            matches!(ca.issue_node(bad, &[]), Err(CertsError::InvalidNodeId(_))),
            "{bad:?} must be refused"
        );
    }
    assert!(ca.issue_node("node12", &[]).is_ok());
}

#[test]
fn identity_uris_parse_strictly() {
    assert_eq!(
        Identity::from_uri("urn:vault:node:node3"),
        Ok(Identity::Node("node3".into()))
    );
    assert_eq!(
        Identity::from_uri("urn:vault:client:a.b@c"),
        Ok(Identity::Client("a.b@c".into()))
    );
    assert_eq!(
        Identity::from_uri("urn:vault:admin:root"),
        Ok(Identity::Admin("root".into()))
    );
    assert_eq!(
        Identity::Admin("root".into()).to_string(),
        "urn:vault:admin:root"
    );
    let too_long = format!("urn:vault:client:{}", "x".repeat(65));
    for bad in [
        "",
        "urn:vault:node:",
        "urn:vault:nodes:node1",
        "URN:VAULT:NODE:node1",
        "urn:vault:client:al ice",
        "urn:vault:client:a:b",
        "urn:other:node:node1",
        "urn:vault:client:\u{e9}",
        too_long.as_str(),
    ] {
        assert!(Identity::from_uri(bad).is_err(), "{bad:?} must be refused");
    }
}

fn certificate_with_uris(uris: &[&str]) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["host.example".to_string()]).unwrap();
    for uri in uris {
        params
            .subject_alt_names
            .push(SanType::URI((*uri).try_into().unwrap()));
    }
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn certificates_must_carry_exactly_one_vault_identity() {
    assert_eq!(
        Identity::from_certificate(&certificate_with_uris(&[])),
        Err(IdentityError::Missing)
    );
    assert_eq!(
        Identity::from_certificate(&certificate_with_uris(&["https://example.com"])),
        Err(IdentityError::Missing)
    );
    assert_eq!(
        Identity::from_certificate(&certificate_with_uris(&[
            "urn:vault:node:node1",
            "urn:vault:admin:root"
        ])),
        Err(IdentityError::Ambiguous(2))
    );
    assert!(matches!(
        Identity::from_certificate(&certificate_with_uris(&["urn:vault:root:x"])),
        Err(IdentityError::InvalidUri(_))
    ));
    assert_eq!(
        Identity::from_certificate(&certificate_with_uris(&["https://x", "urn:vault:client:c"])),
        Ok(Identity::Client("c".into()))
    );
    assert!(matches!(
        Identity::from_certificate(b"not DER"),
        Err(IdentityError::Malformed(_))
    ));
}

#[test]
fn files_round_trip_and_keys_are_private() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path();
    let cluster = cluster();
    cluster.ca.write(path).unwrap();
    cluster.node.write(path, NODE_STEM).unwrap();
    cluster.client.write(path, CLIENT_STEM).unwrap();
    for key in [CA_KEY_FILE, "node.key", "client.key"] {
        let mode = std::fs::metadata(path.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    // A reloaded CA still issues certificates that chain to the stored CA
    // certificate.
    let reloaded = CertificateAuthority::load(path).unwrap();
    assert_eq!(reloaded.certificate_pem(), cluster.ca.certificate_pem());
    let later = reloaded
        .issue_client(&Identity::admin("late").unwrap())
        .unwrap();
    later.write(path, "late").unwrap();
    let node = Credentials::load(
        &path.join(CA_CERT_FILE),
        &path.join("node.crt"),
        &path.join("node.key"),
    )
    .unwrap();
    let late = Credentials::load(
        &path.join(CA_CERT_FILE),
        &path.join("late.crt"),
        &path.join("late.key"),
    )
    .unwrap();
    let (_, server) = handshake(
        late.client_config().unwrap(),
        node.server_config().unwrap(),
        "127.0.0.1",
    )
    .unwrap();
    assert_eq!(
        peer_identity(server.peer_certificates()),
        Identity::Admin("late".into())
    );
}

#[test]
fn existing_files_are_never_overwritten() {
    let directory = tempfile::tempdir().unwrap();
    let cluster = cluster();
    cluster.node.write(directory.path(), NODE_STEM).unwrap();
    let error = cluster
        .client
        .write(directory.path(), NODE_STEM)
        .unwrap_err();
    assert!(
        matches!(&error, CertsError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{error:?}"
    );
}

#[test]
fn broken_files_are_errors_that_do_not_echo_their_contents() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path();
    std::fs::write(
        path.join("bad.key"),
        "-----BEGIN PRIVATE KEY-----\nsecret!!\n",
    )
    .unwrap();
    std::fs::write(path.join("empty.crt"), "").unwrap();
    let error = files::read_private_key(&path.join("bad.key")).unwrap_err();
    assert!(!error.to_string().contains("secret"), "{error}");
    assert!(files::read_certificates(&path.join("empty.crt")).is_err());
    assert!(files::read_certificates(&path.join("missing.crt")).is_err());
}

#[test]
fn debug_output_never_shows_keys() {
    let cluster = cluster();
    let shown = format!(
        "{:?} {:?} {:?}",
        cluster.ca,
        cluster.node,
        credentials(&cluster.ca, &cluster.client)
    );
    assert!(!shown.contains("PRIVATE"), "{shown}");
    assert!(
        shown.contains("node1") && shown.contains("alice"),
        "{shown}"
    );
}

#[test]
fn derived_keys_are_stable_per_key_and_label() {
    let cluster = cluster();
    let node = credentials(&cluster.ca, &cluster.node);
    let again = credentials(&cluster.ca, &cluster.node);
    let other = credentials(&cluster.ca, &cluster.client);
    let tag = |credentials: &Credentials, label: &[u8]| {
        ring::hmac::sign(&credentials.derive_hmac_key(label), b"connection id")
            .as_ref()
            .to_vec()
    };
    assert_eq!(tag(&node, b"reset"), tag(&again, b"reset"));
    assert_ne!(tag(&node, b"reset"), tag(&node, b"other purpose"));
    assert_ne!(tag(&node, b"reset"), tag(&other, b"reset"));
}
