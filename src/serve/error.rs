//! The one error type of the HTTP layer: each variant is a status code and a
//! JSON body `{"error": "..."}`. Server-side failures are logged to stderr
//! and answered with a generic body, never with their internals.

use axum::http::StatusCode;
use axum::http::header::{HeaderValue, WWW_AUTHENTICATE};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An HTTP error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad number, bad code, bad JSON, …).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no or a wrong bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the operation is disabled on this server.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request is well formed but refused (an edit that would
    /// break a constraint).
    #[error("{0}")]
    Conflict(String),
    /// 412: `If-Match` names an older version.
    #[error("version {given} is stale: the current version is {current}")]
    Stale {
        /// The version the client sent.
        given: String,
        /// The current version.
        current: i64,
    },
    /// 413: the body or the batch is too large.
    #[error("{0}")]
    TooLarge(String),
    /// 415: a content type the endpoint does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 428: a write without `If-Match`.
    #[error("{message}")]
    PreconditionRequired {
        /// What is missing.
        message: String,
        /// The current version, so the client can retry.
        current: i64,
    },
    /// 501: an operation the store's backend does not offer yet (an edit
    /// on a PostgreSQL store).
    #[error("{0}")]
    NotImplemented(String),
    /// 500: anything else; the detail is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The status code of this error.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Stale { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PreconditionRequired { .. } => StatusCode::PRECONDITION_REQUIRED,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A 500 from anything displayable (a store error, a panicked task).
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Internal(detail) => {
                eprintln!("wangge serve: internal error: {detail}");
                json!({"error": "internal server error"})
            }
            ApiError::Stale { current, .. } | ApiError::PreconditionRequired { current, .. } => {
                json!({"error": self.to_string(), "current_version": current})
            }
            _ => json!({"error": self.to_string()}),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<wangge_engine::store::StoreError> for ApiError {
    fn from(e: wangge_engine::store::StoreError) -> Self {
        match e {
            wangge_engine::store::StoreError::Unsupported { what } => {
                ApiError::NotImplemented(what)
            }
            e => ApiError::internal(e),
        }
    }
}

/// Runs CPU or disk work off the async executor; a panic in it is a 500.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker task failed: {e}")))?
}
