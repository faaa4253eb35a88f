//! Who is calling the JSON API: the account behind the API token in
//! `Authorization: Bearer <token>`. No cookie is ever read here, so a page
//! on another site cannot make a signed-in browser call the API.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use rpibroker_wire::ErrorCode;

use super::Failure;
use crate::accounts::User;
use crate::accounts::api_tokens;
use crate::actions::Actor;
use crate::broker::Shared;
use crate::time::UnixTime;

/// Longest `Authorization` value looked at; a real token is far shorter.
const MAX_AUTHORIZATION: usize = 256;

/// The authenticated account of a JSON API call.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub actor: Actor,
}

fn refused() -> Failure {
    Failure::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::BadApiToken,
        "send a current API token as `Authorization: Bearer <token>`; create one on your account page",
    )
}

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        let secret = parts
            .headers
            .get(header::AUTHORIZATION)
            .filter(|v| v.len() <= MAX_AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| v.trim().to_string())
            .ok_or_else(refused)?;
        let holder = shared
            .store
            .blocking(move |s| api_tokens::authenticate(s, &secret, UnixTime::now()))
            .await
            .map_err(|e| Failure::internal("API token lookup failed", e))?
            .ok_or_else(refused)?;
        if holder.suspended {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                ErrorCode::AccountSuspended,
                "this account is suspended; its API tokens do not work. Contact the broker's operator",
            ));
        }
        Ok(Caller {
            actor: Actor::from(&holder),
            user: holder.user,
        })
    }
}
