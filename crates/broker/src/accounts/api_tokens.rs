//! API tokens: an account's scripts call the JSON API with
//! `Authorization: Bearer <token>`. A token is created with a name, shown
//! once, stored only as its SHA-256, listed with its times and revoked by
//! its owner. A suspended account's tokens authenticate no one.

use serde::Serialize;

use super::{AccountError, User};
use crate::store::{ApiTokenRecord, Store};
use crate::time::UnixTime;
use crate::token;

/// Tokens one account may hold at once.
pub const MAX_PER_ACCOUNT: i64 = 20;
/// Longest token name, in characters.
pub const MAX_NAME_LEN: usize = 64;
/// What every API token starts with, so a leaked one is recognisable (and
/// never mistaken for a device token, which starts `rpb_` followed by hex).
pub const PREFIX: &str = "rpb_api_";

/// A token as its owner sees it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl From<ApiTokenRecord> for ApiToken {
    fn from(r: ApiTokenRecord) -> Self {
        Self {
            id: r.id,
            name: r.name,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
        }
    }
}

/// A token just created: `secret` is shown this once (and never in `Debug`).
pub struct NewApiToken {
    pub secret: String,
    pub token: ApiToken,
}

impl std::fmt::Debug for NewApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiToken")
            .field("secret", &"MASKED")
            .field("token", &self.token)
            .finish()
    }
}

/// The account behind a token that authenticated.
#[derive(Debug, Clone)]
pub struct TokenHolder {
    pub user: User,
    pub suspended: bool,
}

/// Checks a token name: trimmed, 1 to [`MAX_NAME_LEN`] characters, no
/// control characters.
fn parse_name(name: &str) -> Result<String, AccountError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control)
    {
        return Err(AccountError::BadTokenName(format!(
            "a token's name has 1 to {MAX_NAME_LEN} characters and no control characters"
        )));
    }
    Ok(name.to_string())
}

/// Creates a token for `user_id`; at most [`MAX_PER_ACCOUNT`] per account.
pub fn create(
    store: &Store,
    user_id: i64,
    name: &str,
    now: UnixTime,
) -> Result<NewApiToken, AccountError> {
    let name = parse_name(name)?;
    let secret = token::generate_with(PREFIX);
    let record = store
        .add_api_token(user_id, &name, &token::hash(&secret), MAX_PER_ACCOUNT, now)?
        .ok_or(AccountError::TooManyTokens(MAX_PER_ACCOUNT))?;
    Ok(NewApiToken {
        secret,
        token: record.into(),
    })
}

/// The account's tokens, oldest first.
pub fn list(store: &Store, user_id: i64) -> Result<Vec<ApiToken>, AccountError> {
    Ok(store
        .api_tokens_of(user_id)?
        .into_iter()
        .map(ApiToken::from)
        .collect())
}

/// Revokes token `id` of `user_id`; another account's token is as unknown
/// as one that never existed.
pub fn revoke(store: &Store, user_id: i64, id: i64) -> Result<(), AccountError> {
    if store.remove_api_token(user_id, id)? {
        Ok(())
    } else {
        Err(AccountError::NoSuchToken)
    }
}

/// The account behind `secret`, if it is a current token.
pub fn authenticate(
    store: &Store,
    secret: &str,
    now: UnixTime,
) -> Result<Option<TokenHolder>, AccountError> {
    if !secret.starts_with(PREFIX) {
        return Ok(None);
    }
    Ok(store
        .use_api_token(&token::hash(secret), now)?
        .map(|(_, user)| TokenHolder {
            suspended: user.suspended_at.is_some(),
            user: user.into(),
        }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_bounded_and_printable() {
        assert_eq!(super::parse_name("  ci deploy ").unwrap(), "ci deploy");
        assert!(super::parse_name("").is_err());
        assert!(super::parse_name("   ").is_err());
        assert!(super::parse_name("a\nb").is_err());
        assert!(super::parse_name(&"x".repeat(65)).is_err());
        assert!(super::parse_name(&"é".repeat(64)).is_ok());
    }
}
