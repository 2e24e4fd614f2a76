//! Typed errors of the OCI client.

/// An OCI call that failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum OciError {
    /// The service answered with an error status (`{"code","message"}` body).
    #[error("OCI {status} {code}: {message} (opc-request-id {})", opc_request_id.as_deref().unwrap_or("-"))]
    Service {
        /// HTTP status.
        status: u16,
        /// Service error code, e.g. `NotAuthenticated`, `IncorrectState`.
        code: String,
        /// Service message.
        message: String,
        /// `opc-request-id` of the failed call.
        opc_request_id: Option<String>,
    },
    /// The request timed out.
    #[error("OCI request timed out: {0}")]
    Timeout(String),
    /// The connection failed.
    #[error("OCI transport error: {0}")]
    Transport(String),
    /// The answer could not be decoded.
    #[error("OCI answer not understood: {0}")]
    Decode(String),
    /// Credentials or configuration are unusable.
    #[error("OCI configuration: {0}")]
    Config(String),
}

impl OciError {
    /// Whether the SDK retry policy retries this error: timeouts and connection
    /// failures, 429, 5xx except 501, and 409 IncorrectState.
    pub fn is_retryable(&self) -> bool {
        match self {
            OciError::Timeout(_) | OciError::Transport(_) => true,
            OciError::Service { status, code, .. } => {
                *status == 429
                    || (*status >= 500 && *status != 501)
                    || (*status == 409 && code == "IncorrectState")
            }
            OciError::Decode(_) | OciError::Config(_) => false,
        }
    }

    /// HTTP status of a service error.
    pub fn status(&self) -> Option<u16> {
        match self {
            OciError::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Service error code of a service error.
    pub fn code(&self) -> Option<&str> {
        match self {
            OciError::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}
