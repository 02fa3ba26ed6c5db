//! Frames: a 4-byte big-endian length, then that many bytes of postcard.
//!
//! The length is checked against the caller's limit *before* anything is
//! allocated, and the body buffer grows only as bytes actually arrive, so a
//! peer that announces a huge frame and sends nothing costs nothing. A frame
//! whose body does not decode to exactly one value (trailing bytes included)
//! is malformed. Nothing here panics on any input.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of the length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// Largest buffer reserved up front for a frame body; larger bodies grow
/// the buffer as their bytes arrive.
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced or encoded length exceeds the limit of this stream.
    #[error("frame of {length} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The announced (or encoded) body length.
        length: u64,
        /// The limit in force on this stream.
        limit: usize,
    },
    /// The body is not one postcard value of the expected type.
    #[error("malformed frame: {0}")]
    Malformed(postcard::Error),
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The underlying stream failed (reset, connection lost, ...).
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `value` as one frame (length prefix included), refusing bodies
/// longer than `limit`.
pub fn encode_frame<T: Serialize>(value: &T, limit: usize) -> Result<Vec<u8>, FrameError> {
    let mut frame =
        postcard::to_extend(value, vec![0u8; FRAME_HEADER_LEN]).map_err(FrameError::Malformed)?;
    let body_length = frame.len() - FRAME_HEADER_LEN;
    let too_large = || FrameError::TooLarge {
        length: body_length as u64,
        limit,
    };
    if body_length > limit {
        return Err(too_large());
    }
    let prefix = u32::try_from(body_length).map_err(|_| too_large())?;
    frame[..FRAME_HEADER_LEN].copy_from_slice(&prefix.to_be_bytes());
    Ok(frame)
}

/// Decodes the first frame of `bytes`.
///
/// Returns `Ok(None)` if `bytes` holds only part of a frame (read more), or
/// the value and the number of bytes it used. An announced length above
/// `limit` is refused as soon as the prefix is complete.
pub fn decode_frame<T: DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
) -> Result<Option<(T, usize)>, FrameError> {
    let Some(header) = bytes.get(..FRAME_HEADER_LEN) else {
        return Ok(None);
    };
    let length = body_length(header, limit)?;
    let end = FRAME_HEADER_LEN + length;
    match bytes.get(FRAME_HEADER_LEN..end) {
        None => Ok(None),
        Some(body) => Ok(Some((decode_body(body)?, end))),
    }
}

/// Reads one frame from `stream`. `Ok(None)` means the stream ended cleanly
/// on a frame boundary.
pub async fn read_frame<T, S>(stream: &mut S, limit: usize) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    S: AsyncRead + Unpin,
{
    match read_frame_length(stream, limit).await? {
        Some(length) => read_frame_body(stream, length).await.map(Some),
        None => Ok(None),
    }
}

/// Reads the length prefix of the next frame and checks it against
/// `limit`. `Ok(None)` means the stream ended cleanly on a frame boundary.
pub(crate) async fn read_frame_length<S>(
    stream: &mut S,
    limit: usize,
) -> Result<Option<usize>, FrameError>
where
    S: AsyncRead + Unpin,
{
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut filled = 0;
    while filled < FRAME_HEADER_LEN {
        match stream.read(&mut header[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            count => filled += count,
        }
    }
    body_length(&header, limit).map(Some)
}

/// Reads a frame body of `length` bytes (already checked against the
/// limit) and decodes it.
pub(crate) async fn read_frame_body<T, S>(stream: &mut S, length: usize) -> Result<T, FrameError>
where
    T: DeserializeOwned,
    S: AsyncRead + Unpin,
{
    let mut body = Vec::with_capacity(length.min(INITIAL_BODY_CAPACITY));
    // `length` fits in u64 because it came from a u32.
    let received = stream.take(length as u64).read_to_end(&mut body).await?;
    if received < length {
        return Err(FrameError::Truncated);
    }
    decode_body(&body)
}

/// Writes `value` as one frame to `stream`. Nothing is written if the
/// value does not fit in `limit`.
pub async fn write_frame<T, S>(stream: &mut S, value: &T, limit: usize) -> Result<(), FrameError>
where
    T: Serialize,
    S: AsyncWrite + Unpin,
{
    let frame = encode_frame(value, limit)?;
    stream.write_all(&frame).await?;
    Ok(())
}

fn body_length(header: &[u8], limit: usize) -> Result<usize, FrameError> {
    let mut prefix = [0u8; FRAME_HEADER_LEN];
    prefix.copy_from_slice(header);
    let length = u32::from_be_bytes(prefix);
    match usize::try_from(length) {
        Ok(length) if length <= limit => Ok(length),
        _ => Err(FrameError::TooLarge {
            length: u64::from(length),
            limit,
        }),
    }
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    match postcard::take_from_bytes(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, _trailing)) => Err(FrameError::Malformed(
            postcard::Error::DeserializeBadEncoding,
        )),
        Err(error) => Err(FrameError::Malformed(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Message {
        Ping(u64),
        Data { term: u64, entries: Vec<Vec<u8>> },
        Text(String),
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            any::<u64>().prop_map(Message::Ping),
            (
                any::<u64>(),
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)
            )
                .prop_map(|(term, entries)| Message::Data { term, entries }),
            ".{0,40}".prop_map(Message::Text),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame::<Message>(&bytes, 256);
        }

        #[test]
        fn arbitrary_bodies_never_panic_the_decoder(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            match decode_frame::<Message>(&frame, 1024) {
                Ok(Some((_, used))) => prop_assert_eq!(used, frame.len()),
                Ok(None) => prop_assert!(false, "a complete frame must not ask for more"),
                Err(_) => {}
            }
        }

        #[test]
        fn frames_round_trip_back_to_back(messages in prop::collection::vec(message(), 0..16)) {
            let mut stream = Vec::new();
            for message in &messages {
                stream.extend(encode_frame(message, 4096).unwrap());
            }
            let mut decoded = Vec::new();
            let mut rest = stream.as_slice();
            while let Some((message, used)) = decode_frame::<Message>(rest, 4096).unwrap() {
                decoded.push(message);
                rest = &rest[used..];
            }
            prop_assert!(rest.is_empty());
            prop_assert_eq!(decoded, messages);
        }

        #[test]
        fn every_strict_prefix_of_a_frame_asks_for_more(message in message(), cut in any::<prop::sample::Index>()) {
            let frame = encode_frame(&message, 4096).unwrap();
            let prefix = &frame[..cut.index(frame.len())];
            prop_assert!(matches!(decode_frame::<Message>(prefix, 4096), Ok(None)));
        }

        #[test]
        fn async_reader_agrees_with_the_slice_decoder(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let from_stream = runtime.block_on(read_frame::<Message, _>(&mut bytes.as_slice(), 256));
            let from_slice = decode_frame::<Message>(&bytes, 256);
            match (from_stream, from_slice) {
                (Ok(Some(a)), Ok(Some((b, _)))) => prop_assert_eq!(a, b),
                (Ok(None), Ok(None)) => prop_assert!(bytes.is_empty()),
                (Err(FrameError::Truncated), Ok(None)) => prop_assert!(!bytes.is_empty()),
                (Err(_), Err(_)) => {}
                (stream, slice) => prop_assert!(false, "stream {:?} vs slice {:?}", stream, slice.map(|f| f.map(|(m, _)| m))),
            }
        }
    }

    #[test]
    fn oversized_lengths_are_refused_before_the_body_arrives() {
        // Only the prefix is present: a decoder that waited for (or
        // allocated) the 4 GiB body would return Ok(None) instead.
        let header = u32::MAX.to_be_bytes();
        assert!(matches!(
            decode_frame::<Message>(&header, 1 << 20),
            Err(FrameError::TooLarge { length, limit }) if length == u64::from(u32::MAX) && limit == 1 << 20
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let result = runtime.block_on(read_frame::<Message, _>(&mut header.as_slice(), 1 << 20));
        assert!(
            matches!(result, Err(FrameError::TooLarge { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn oversized_values_are_not_encoded() {
        let big = Message::Text("x".repeat(100));
        assert!(matches!(
            encode_frame(&big, 50),
            Err(FrameError::TooLarge { limit: 50, .. })
        ));
        assert!(encode_frame(&big, 200).is_ok());
    }

    #[test]
    fn trailing_bytes_inside_a_frame_are_malformed() {
        let mut frame = encode_frame(&Message::Ping(7), 64).unwrap();
        frame.push(0);
        let new_length = (frame.len() - FRAME_HEADER_LEN) as u32;
        frame[..FRAME_HEADER_LEN].copy_from_slice(&new_length.to_be_bytes());
        assert!(matches!(
            decode_frame::<Message>(&frame, 64),
            Err(FrameError::Malformed(_))
        ));
    }
}
