use std::time::Duration;

/// Errors of the JumpCloud client. None carries the API key: messages hold statuses, paths and
/// JumpCloud's own `message` only.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JumpCloudError {
    #[error("JumpCloud: {what} not found")]
    NotFound { what: String },
    #[error("JumpCloud: already a member")]
    AlreadyMember,
    #[error("JumpCloud refused the API key (HTTP {status}); check the integration's secret")]
    Unauthorized { status: u16 },
    #[error("JumpCloud rate limit still hit after retrying")]
    RateLimited { retry_after: Option<Duration> },
    #[error("JumpCloud unavailable: {reason}")]
    Transient { reason: String },
    #[error("JumpCloud rejected the request (HTTP {status}): {message}")]
    Invalid { status: u16, message: String },
    #[error("JumpCloud answered something unexpected: {reason}")]
    Decode { reason: String },
    #[error("JumpCloud credentials unavailable: {reason}")]
    Credentials { reason: String },
}

impl JumpCloudError {
    /// Worth another attempt within the retry budget.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transient { .. })
    }
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}
