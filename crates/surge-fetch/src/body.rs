//! Response bodies, streamed frame by frame into a sink and never longer
//! than a maximum size (counted after decompression, so a small
//! compressed bomb is stopped too).

use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{FetchError, FetchErrorKind, classify};

/// What happens to a response body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BodySink {
    /// Counted and dropped (memory stays flat whatever the size).
    #[default]
    Discard,
    /// Counted and hashed (SHA-256), then dropped.
    Sha256,
    /// Kept in memory (still bounded by the maximum size).
    Buffer,
    /// Written to this file (created or truncated; removed if the body
    /// fails).
    File(PathBuf),
}

/// What the sink produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BodyOutput {
    /// Nothing kept.
    #[default]
    None,
    /// The lowercase hex SHA-256 of the body.
    Sha256(String),
    /// The body.
    Bytes(Bytes),
    /// The file the body was written to.
    File(PathBuf),
}

/// Reads `body` into `sink`: its length and the sink's output.
///
/// # Errors
/// [`FetchErrorKind::BodyTooLarge`] past `max` bytes,
/// [`FetchErrorKind::ReadTimeout`] when no frame arrives for `idle`, the
/// connection's or the decoder's errors, and [`FetchErrorKind::System`]
/// when the file cannot be written.
pub(crate) async fn read<B>(
    mut body: B,
    sink: &BodySink,
    max: u64,
    idle: Duration,
) -> Result<(u64, BodyOutput), FetchError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut len: u64 = 0;
    let mut hasher = matches!(sink, BodySink::Sha256).then(Sha256::new);
    let mut buffer = matches!(sink, BodySink::Buffer).then(BytesMut::new);
    let mut file = match sink {
        BodySink::File(path) => Some(tokio::fs::File::create(path).await.map_err(|e| {
            FetchError::new(
                FetchErrorKind::System,
                format!("cannot create {}: {e}", path.display()),
            )
        })?),
        _ => None,
    };
    let result: Result<(), FetchError> = async {
        loop {
            let frame = match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => {
                    return Err(FetchError::new(
                        FetchErrorKind::ReadTimeout,
                        format!(
                            "no body data for {} ms (after {len} bytes)",
                            idle.as_millis()
                        ),
                    ));
                }
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => {
                    let e: Box<dyn std::error::Error + Send + Sync> = e.into();
                    return Err(classify(&*e));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            len += data.len() as u64;
            if len > max {
                return Err(FetchError::new(
                    FetchErrorKind::BodyTooLarge,
                    format!("body larger than the maximum of {max} bytes"),
                ));
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&data);
            }
            if let Some(b) = buffer.as_mut() {
                b.extend_from_slice(&data);
            }
            if let Some(f) = file.as_mut() {
                f.write_all(&data).await.map_err(|e| {
                    FetchError::new(
                        FetchErrorKind::System,
                        format!("cannot write the body: {e}"),
                    )
                })?;
            }
        }
    }
    .await;
    if let (Some(mut f), BodySink::File(path)) = (file, sink) {
        let flushed = f.flush().await;
        if result.is_err() || flushed.is_err() {
            drop(f);
            let _ = tokio::fs::remove_file(path).await;
        }
        result?;
        flushed.map_err(|e| {
            FetchError::new(
                FetchErrorKind::System,
                format!("cannot write the body: {e}"),
            )
        })?;
        return Ok((len, BodyOutput::File(path.clone())));
    }
    result?;
    let output = match (hasher, buffer) {
        (Some(h), _) => BodyOutput::Sha256(hex::encode(h.finalize())),
        (_, Some(b)) => BodyOutput::Bytes(b.freeze()),
        _ => BodyOutput::None,
    };
    Ok((len, output))
}
