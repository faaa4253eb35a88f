//! The caller's account: who they are (`GET /api/v1/me`) and their API
//! tokens (list, create, revoke), as on the account page.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rpibroker_wire::ErrorCode;
use serde::{Deserialize, Serialize};

use super::Failure;
use super::body::JsonBody;
use super::caller::Caller;
use crate::accounts::api_tokens::{self, ApiToken};
use crate::accounts::{AccountError, User};
use crate::broker::Shared;
use crate::time::UnixTime;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
}

#[derive(Serialize)]
pub struct Tokens {
    tokens: Vec<ApiToken>,
}

/// A token just created, with its secret this once.
#[derive(Serialize)]
pub struct CreatedToken {
    token: String,
    #[serde(flatten)]
    about: ApiToken,
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

pub async fn create_token(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), Failure> {
    let user = caller.user.id;
    let new = shared
        .store
        .blocking(move |s| api_tokens::create(s, user, &body.name, UnixTime::now()))
        .await?;
    tracing::info!(user, token = new.token.id, "API token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: new.secret,
            about: new.token,
        }),
    ))
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
