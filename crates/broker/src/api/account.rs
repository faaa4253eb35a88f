//! The caller's account: who they are (`GET /api/v1/me`) and their API
//! tokens (list, revoke). Tokens are made only on the account page, by a
//! signed-in person: a token cannot mint more tokens, so revoking a stolen
//! one (or resetting the password, which revokes them all) ends its reach.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rpibroker_wire::ErrorCode;
use serde::Serialize;

use super::Failure;
use super::caller::Caller;
use crate::accounts::api_tokens::{self, ApiToken};
use crate::accounts::{AccountError, User};
use crate::broker::Shared;

#[derive(Serialize)]
pub struct Tokens {
    tokens: Vec<ApiToken>,
}

impl From<AccountError> for Failure {
    fn from(e: AccountError) -> Self {
        let (status, code) = match &e {
            AccountError::BadTokenName(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidInput)
            }
            AccountError::TooManyTokens(_) => (StatusCode::CONFLICT, ErrorCode::LimitReached),
            AccountError::NoSuchToken => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            _ => return Failure::internal("an account action failed", e),
        };
        Failure::new(status, code, e.to_string())
    }
}

pub async fn me(caller: Caller) -> Json<User> {
    Json(caller.user)
}

pub async fn tokens(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<Tokens>, Failure> {
    let user = caller.user.id;
    let tokens = shared
        .store
        .blocking(move |s| api_tokens::list(s, user))
        .await?;
    Ok(Json(Tokens { tokens }))
}

pub async fn revoke_token(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Failure> {
    let user = caller.user.id;
    let id: i64 = id
        .parse()
        .map_err(|_| Failure::from(AccountError::NoSuchToken))?;
    shared
        .store
        .blocking(move |s| api_tokens::revoke(s, user, id))
        .await?;
    tracing::info!(user, token = id, "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}
