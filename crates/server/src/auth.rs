//! Passwords, tokens and sessions.
//!
//! Passwords are hashed with Argon2id on a blocking thread. A session token is
//! 32 random bytes (hex); the database keeps only its SHA-256, so a copy of
//! the database (a backup, a replica) holds no usable token. Sessions live in
//! `mgc`, so any chat server of the pool accepts a token; each server caches
//! them and drops a cached session when the log says it ended.

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use pchat_api::ErrorCode;
use pchat_domain::User;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn random_bytes<const N: usize>() -> ApiResult<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("no randomness: {e}")))?;
    Ok(b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn check_password_policy(password: &str) -> ApiResult<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::new(
            ErrorCode::InvalidValue,
            format!("passwords are {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Each Argon2 computation holds 19 MiB: at most this many run at once.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Argon2id hash in PHC string form. Slow on purpose: runs off the async threads.
pub async fn hash_password(password: String) -> ApiResult<String> {
    let salt_bytes: [u8; 16] = random_bytes()?;
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
    .map_err(|e| ApiError::new(ErrorCode::Internal, e))
}

/// Checks a password against a stored hash (false for a malformed hash).
pub async fn verify_password(password: String, hash: String) -> bool {
    let Ok(_permit) = HASHING.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || match PasswordHash::new(&hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    })
    .await
    .unwrap_or(false)
}

/// A new session token and the hash the database keeps of it.
pub fn new_token() -> ApiResult<(String, String)> {
    let token = hex(&random_bytes::<32>()?);
    let hash = token_hash(&token);
    Ok((token, hash))
}

pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// How long a cached session is trusted before the database is asked again.
const SESSION_TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct SessionCache {
    by_hash: Mutex<HashMap<String, (User, Instant)>>,
}

impl SessionCache {
    fn get(&self, hash: &str) -> Option<User> {
        let map = self.by_hash.lock().ok()?;
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < SESSION_TTL)
            .map(|(u, _)| u.clone())
    }

    fn put(&self, hash: String, user: User) {
        if let Ok(mut map) = self.by_hash.lock() {
            if map.len() > 100_000 {
                map.retain(|_, (_, at)| at.elapsed() < SESSION_TTL);
            }
            map.insert(hash, (user, Instant::now()));
        }
    }

    /// An administrator's session this server checked within `grace`,
    /// however stale (see [`PoolAdmin`]).
    fn recent_admin(&self, hash: &str, grace: Duration) -> Option<User> {
        let map = self.by_hash.lock().ok()?;
        map.get(hash)
            .filter(|(u, at)| u.admin && at.elapsed() < grace)
            .map(|(u, _)| u.clone())
    }

    pub fn forget(&self, hash: &str) {
        if let Ok(mut map) = self.by_hash.lock() {
            map.remove(hash);
        }
    }
}

/// The signed-in caller of a request, and its token's hash.
pub struct Caller {
    pub user: User,
    pub token_hash: String,
    /// The operator at the machine (`pchat admin --data-dir`), not a signed-in user.
    pub operator: bool,
}

/// Put in a request's extensions by an in-process caller (never by the
/// network) to act as the operator at the machine: `Actor::System`, which
/// passes every permission check.
#[derive(Clone, Copy, Debug)]
pub struct Operator;

impl Caller {
    /// Who the domain sees as asking.
    pub fn actor(&self) -> pchat_domain::Actor {
        if self.operator {
            pchat_domain::Actor::System
        } else {
            pchat_domain::Actor::User(self.user.id)
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.user.admin {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::Forbidden, "administrators only"))
        }
    }
}

fn bearer(parts: &Parts) -> Option<String> {
    if let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let v = h.to_str().ok()?;
        let t = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))?;
        return Some(t.trim().to_string());
    }
    // Browsers cannot set headers on a WebSocket: allow `?access_token=` there.
    parts
        .uri
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("access_token="))
        .map(|t| t.to_string())
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        if parts.extensions.get::<Operator>().is_some() {
            return Ok(Caller {
                user: User {
                    id: 0,
                    name: "operator".into(),
                    display_name: "operator".into(),
                    admin: true,
                    created_at: 0,
                },
                token_hash: String::new(),
                operator: true,
            });
        }
        let token = bearer(parts)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
        let hash = token_hash(&token);
        if let Some(user) = state.sessions.get(&hash) {
            return Ok(Caller {
                user,
                token_hash: hash,
                operator: false,
            });
        }
        match state.store.session_user(hash.clone()).await? {
            Some(user) => {
                state.sessions.put(hash.clone(), user.clone());
                Ok(Caller {
                    user,
                    token_hash: hash,
                    operator: false,
                })
            }
            None => Err(ApiError::new(
                ErrorCode::Unauthorized,
                "the token is unknown or signed out",
            )),
        }
    }
}

/// How long an administrator's session, once checked here, still opens the
/// DR dashboard while the database cannot be asked.
const DASHBOARD_GRACE: Duration = Duration::from_secs(12 * 3600);

/// An administrator using the DR dashboard (`/api/v1/admin/...`). Like
/// [`Caller`], but when the database is unreachable (the data center that
/// served it is lost, the pool not failed over yet) an administrator whose
/// session this server checked within [`DASHBOARD_GRACE`] still gets in:
/// a dashboard left open on a server of the backup data center can run the
/// failover. Sessions signed out elsewhere meanwhile are not known here.
pub struct PoolAdmin(pub User);

impl FromRequestParts<Arc<AppState>> for PoolAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await {
            Ok(c) => {
                c.require_admin()?;
                Ok(PoolAdmin(c.user))
            }
            Err(e) if e.code == ErrorCode::Unavailable => bearer(parts)
                .map(|t| token_hash(&t))
                .and_then(|h| state.sessions.recent_admin(&h, DASHBOARD_GRACE))
                .map(PoolAdmin)
                .ok_or(e),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn password_round_trip() {
        let h = hash_password("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), h.clone()).await);
        assert!(!verify_password("wrong horse".into(), h).await);
        assert!(!verify_password("x".into(), "not a hash".into()).await);
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(token_hash(&a), ha);
        assert_ne!(a, ha);
    }
}
