//! Request extractors that answer bad input with the API's error codes
//! instead of the framework's plain-text rejections.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use pchat_api::ErrorCode;
use serde::de::DeserializeOwned;

/// A JSON body: invalid UTF-8, malformed JSON, wrong fields and oversize
/// bodies each get their own code.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
            } else {
                ApiError::new(ErrorCode::MalformedJson, e.body_text())
            }
        })?;
        parse(&bytes).map(Json)
    }
}

/// Parses a JSON document with the API's error codes.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::new(
            ErrorCode::InvalidUtf8,
            "the request body is not valid UTF-8",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        let code = match e.classify() {
            Category::Data => ErrorCode::InvalidRequest,
            Category::Syntax | Category::Eof | Category::Io => ErrorCode::MalformedJson,
        };
        ApiError::new(code, e.to_string())
    })
}

/// Query parameters, with `invalid_query` for anything malformed.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        // `access_token` is the authentication extractor's (browsers cannot
        // set headers everywhere); every other parameter is the handler's.
        let query: Vec<&str> = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty() && !kv.starts_with("access_token="))
            .collect();
        let uri: axum::http::Uri = format!("/?{}", query.join("&"))
            .parse()
            .map_err(|_| ApiError::new(ErrorCode::InvalidQuery, "malformed query string"))?;
        axum::extract::Query::<T>::try_from_uri(&uri)
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.body_text()))
    }
}

macro_rules! id_path {
    ($name:ident, $code:ident, $what:literal) => {
        #[doc = concat!("A `{id}` path parameter naming a ", $what, ": anything but an integer is not found.")]
        pub struct $name(pub i64);

        impl<S: Send + Sync> FromRequestParts<S> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
                let axum::extract::Path(raw) =
                    axum::extract::Path::<String>::from_request_parts(parts, state)
                        .await
                        .map_err(|e| ApiError::new(ErrorCode::NotFound, e.body_text()))?;
                raw.parse().map($name).map_err(|_| {
                    ApiError::new(ErrorCode::$code, format!(concat!("'{}' is not a ", $what, " id"), raw))
                })
            }
        }
    };
}

id_path!(RoomIdPath, RoomNotFound, "room");
id_path!(GroupIdPath, GroupNotFound, "group");
id_path!(CategoryIdPath, CategoryNotFound, "category");
