//! The dialling side for clients (vault-cli, the client library): one
//! connection to one node, one stream per request.

use super::quic::{client_config, dial, QuicParameters};
use super::request::{open_request, round_trip, RequestLimits, ResponseStream};
use super::wire::Hello;
use super::{codes, PeerAddress, TransportError};
use certs::{Credentials, Identity};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// A mutually authenticated connection from a client (or admin) identity to
/// one node. Requests may be sent concurrently; each uses its own stream.
#[derive(Debug)]
pub struct Client {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    server: Identity,
    limits: RequestLimits,
}

impl Client {
    /// Dials `server`, verifying its certificate against the cluster CA and
    /// `server.server_name`, and presenting the certificate of
    /// `credentials`. Frame limits: 1 MiB requests, 16 MiB responses.
    pub async fn connect(
        credentials: &Credentials,
        server: &PeerAddress,
    ) -> Result<Self, TransportError> {
        let local: SocketAddr = match server.address {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let mut endpoint =
            quinn::Endpoint::client(local).map_err(|source| TransportError::Bind {
                address: local,
                source,
            })?;
        let parameters = QuicParameters {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            max_bidi_streams: 0,
        };
        endpoint.set_default_client_config(client_config(credentials, parameters)?);
        let (connection, identity) = dial(&endpoint, server.address, &server.server_name).await?;
        if identity.node_id().is_none() {
            connection.close(quinn::VarInt::from_u32(codes::BAD_IDENTITY), b"not a node");
            return Err(TransportError::WrongPeer {
                address: server.address,
                expected: "a node".to_string(),
                actual: identity.to_string(),
            });
        }
        Ok(Client {
            endpoint,
            connection,
            server: identity,
            limits: RequestLimits {
                request: 1 << 20,
                response: 16 << 20,
            },
        })
    }

    /// The node this client is connected to, as its certificate says.
    pub fn server_identity(&self) -> &Identity {
        &self.server
    }

    /// Changes the largest request and response this client will send and
    /// accept, in bytes.
    pub fn set_frame_limits(&mut self, request: usize, response: usize) {
        self.limits = RequestLimits { request, response };
    }

    /// Sends one request on a new stream and waits for its response.
    /// Callers bound the wait with their own timeout.
    pub async fn request<Req, Resp>(&self, request: &Req) -> Result<Resp, TransportError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        round_trip(&self.connection, &Hello::Request, request, self.limits).await
    }

    /// Sends one request on a new stream and returns its answer as a
    /// stream of frames, for requests the node answers with
    /// [`Responder::respond_stream`](super::Responder::respond_stream).
    /// Each frame is bounded by the response limit; the caller bounds the
    /// number of frames and the wait.
    pub async fn request_stream<Req, Resp>(
        &self,
        request: &Req,
    ) -> Result<ResponseStream<Resp>, TransportError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        open_request(&self.connection, &Hello::Request, request, self.limits).await
    }

    /// If the node closed this connection because it refused the TLS
    /// handshake (with TLS 1.3 the server checks the client certificate after
    /// the client considers the handshake done, so the refusal shows up on
    /// the first request), a description of the refusal.
    pub fn handshake_refusal(&self) -> Option<String> {
        match self.connection.close_reason()? {
            quinn::ConnectionError::ConnectionClosed(close) => {
                let code: u64 = close.error_code.into();
                // QUIC carries TLS alerts as transport errors 0x100 + alert.
                (0x100..0x200)
                    .contains(&code)
                    .then(|| format!("TLS alert {}: {}", code - 0x100, close.error_code))
            }
            _ => None,
        }
    }

    /// Closes the connection and waits until the server has been told.
    pub async fn close(&self) {
        self.connection
            .close(quinn::VarInt::from_u32(codes::CLOSED), b"done");
        self.endpoint.wait_idle().await;
    }

    /// The raw connection, for tests that craft their own streams.
    #[cfg(test)]
    pub(crate) fn connection(&self) -> &quinn::Connection {
        &self.connection
    }
}
