//! quinn configuration from the cluster's TLS credentials, and reading the
//! verified identity of a connection.

use super::{TransportConfig, TransportError};
use crate::raft::types::NodeId;
use certs::{Credentials, Identity};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, VarInt};
use rustls::pki_types::CertificateDer;
use std::sync::Arc;
use std::time::Duration;

/// Peer streams a connection may have open at once: one is used, a few
/// more let a reconnecting sender open its new stream before the old one
/// is gone.
const MAX_UNI_STREAMS: u32 = 4;

/// The QUIC timing and stream limits of one endpoint.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QuicParameters {
    pub(crate) idle_timeout: Duration,
    pub(crate) keep_alive: Duration,
    pub(crate) max_bidi_streams: u32,
}

impl From<&TransportConfig> for QuicParameters {
    fn from(config: &TransportConfig) -> Self {
        QuicParameters {
            idle_timeout: config.idle_timeout,
            keep_alive: config.keep_alive,
            max_bidi_streams: config.max_streams_per_connection,
        }
    }
}

/// The round-trip time assumed before a connection has measured one; it
/// sets how soon a lost handshake packet is sent again. quinn's default is
/// RFC 9002's 333 ms for the open Internet, which under packet loss makes a
/// reconnecting node's first retransmissions about 1, 2 and 4 s apart.
/// Nodes and their clients are expected within a region, so a shorter
/// guess is kept (a longer real RTT only costs a spurious first resend).
const INITIAL_RTT: Duration = Duration::from_millis(100);

/// QUIC transport parameters shared by both directions of every connection.
fn transport_parameters(
    parameters: QuicParameters,
) -> Result<Arc<quinn::TransportConfig>, TransportError> {
    let mut transport = quinn::TransportConfig::default();
    let idle = IdleTimeout::try_from(parameters.idle_timeout)
        .map_err(|_| TransportError::Tls("idle timeout out of range".to_string()))?;
    transport
        .max_idle_timeout(Some(idle))
        .initial_rtt(INITIAL_RTT)
        .keep_alive_interval(Some(parameters.keep_alive))
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_UNI_STREAMS))
        .max_concurrent_bidi_streams(VarInt::from_u32(parameters.max_bidi_streams));
    Ok(Arc::new(transport))
}

/// Length of the connection ids this endpoint issues.
const CONNECTION_ID_LENGTH: usize = 8;

/// Issues random connection ids that a restarted endpoint will not reject.
///
/// quinn's default generator keys its ids with a per-process secret and
/// silently drops packets for ids it cannot validate, so a node restarted
/// after a crash would never answer its peers' packets for the old
/// connection with a stateless reset. Plain random ids make every unknown
/// id eligible for a reset (rate-limited by quinn); the resets themselves
/// are authenticated by the restart-stable reset key.
#[derive(Debug)]
pub(crate) struct RandomConnectionIds;

impl quinn::ConnectionIdGenerator for RandomConnectionIds {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut bytes = [0u8; CONNECTION_ID_LENGTH];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
        quinn::ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        CONNECTION_ID_LENGTH
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// Endpoint settings that let a node restarted after a crash reset its
/// peers' dead connections at once (RFC 9000 §10.3): a stateless-reset key
/// derived from the node's private key, so it is the same after a restart,
/// and connection ids the new process does not discard.
pub(crate) fn endpoint_config(credentials: &Credentials) -> quinn::EndpointConfig {
    let reset_key = credentials.derive_hmac_key(STATELESS_RESET_LABEL);
    let mut config = quinn::EndpointConfig::new(Arc::new(reset_key));
    config.cid_generator(|| Box::new(RandomConnectionIds));
    config
}

/// Label of the key derivation for QUIC stateless resets.
const STATELESS_RESET_LABEL: &[u8] = b"vault/1 QUIC stateless reset key";

/// The server side: mutual TLS from `credentials`, requiring a client
/// certificate chained to the cluster CA.
pub(crate) fn server_config(
    credentials: &Credentials,
    parameters: QuicParameters,
) -> Result<quinn::ServerConfig, TransportError> {
    let tls = credentials
        .server_config()
        .map_err(|error| TransportError::Tls(error.to_string()))?;
    let crypto =
        QuicServerConfig::try_from(tls).map_err(|error| TransportError::Tls(error.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport_parameters(parameters)?);
    Ok(server)
}

/// The dialling side: present our certificate, verify the server against
/// the cluster CA and the name dialled.
pub(crate) fn client_config(
    credentials: &Credentials,
    parameters: QuicParameters,
) -> Result<quinn::ClientConfig, TransportError> {
    let tls = credentials
        .client_config()
        .map_err(|error| TransportError::Tls(error.to_string()))?;
    let crypto =
        QuicClientConfig::try_from(tls).map_err(|error| TransportError::Tls(error.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport_parameters(parameters)?);
    Ok(client)
}

/// The identity of the certificate the other side presented. rustls has
/// verified the chain against the cluster CA before quinn hands us the
/// connection.
pub(crate) fn connection_identity(connection: &quinn::Connection) -> Result<Identity, String> {
    let any = connection
        .peer_identity()
        .ok_or_else(|| "no peer certificate".to_string())?;
    let chain = any
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| "peer identity is not a certificate chain".to_string())?;
    let leaf = chain
        .first()
        .ok_or_else(|| "empty certificate chain".to_string())?;
    Identity::from_certificate(leaf).map_err(|error| error.to_string())
}

/// The node an identity speaks for, if it is a node identity whose id is
/// the canonical `node<N>` spelling (so one node has one identity).
pub(crate) fn node_of(identity: &Identity) -> Option<NodeId> {
    let text = identity.node_id()?;
    let id: NodeId = text.parse().ok()?;
    (id.to_string() == text).then_some(id)
}

/// Dials `address`, verifies the server chain and name, and returns the
/// connection with the server's identity.
pub(crate) async fn dial(
    endpoint: &quinn::Endpoint,
    address: std::net::SocketAddr,
    server_name: &str,
) -> Result<(quinn::Connection, Identity), TransportError> {
    let connect_error = |reason: String| TransportError::Connect { address, reason };
    let connecting = endpoint
        .connect(address, server_name)
        .map_err(|error| connect_error(error.to_string()))?;
    let connection = connecting
        .await
        .map_err(|error| connect_error(error.to_string()))?;
    match connection_identity(&connection) {
        Ok(identity) => Ok((connection, identity)),
        Err(reason) => {
            connection.close(
                VarInt::from_u32(super::codes::BAD_IDENTITY),
                b"bad identity",
            );
            Err(TransportError::WrongPeer {
                address,
                expected: "a vault identity".to_string(),
                actual: reason,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::node_of;
    use crate::raft::types::NodeId;
    use certs::Identity;

    #[test]
    fn only_canonical_node_identities_are_nodes() {
        assert_eq!(node_of(&Identity::Node("node3".into())), Some(NodeId(3)));
        for not_a_node in [
            Identity::Node("3".into()),
            Identity::Node("node03".into()),
            Identity::Node("node0".into()),
            Identity::Node("leader".into()),
            Identity::Client("node3".into()),
            Identity::Admin("node3".into()),
        ] {
            assert_eq!(node_of(&not_a_node), None, "{not_a_node:?}");
        }
    }
}
