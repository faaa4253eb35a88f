//! What calls to payment providers share: one HTTP client per provider with
//! a deadline on every call, and answers read only up to a bound.

use std::time::Duration;

/// Largest answer read from a provider.
pub const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("could not reach the provider: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("the provider's answer is larger than {MAX_ANSWER} bytes")]
    TooLarge,
}

/// An HTTP client whose every call ends within `timeout`.
pub fn client(timeout: Duration) -> Result<reqwest::Client, HttpError> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("rpibroker/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Reads an answer's body, refusing more than [`MAX_ANSWER`] bytes.
pub async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, HttpError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER as u64)
    {
        return Err(HttpError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
