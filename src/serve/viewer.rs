//! `GET /` and `GET /viewer/{file}`: the built-in map viewer. Its files
//! (and the vendored MapLibre GL JS, BSD-3-Clause) are compiled into the
//! binary, so the viewer works without any network.

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The viewer's files: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../viewer/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../viewer/app.css"),
    ),
    (
        "maplibre-gl.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../viewer/vendor/maplibre-gl.js"),
    ),
    (
        "maplibre-gl.css",
        "text/css; charset=utf-8",
        include_bytes!("../viewer/vendor/maplibre-gl.css"),
    ),
    (
        "MAPLIBRE-LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../viewer/vendor/MAPLIBRE-LICENSE.txt"),
    ),
];

/// `GET /`: the viewer page.
pub(crate) async fn index() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../viewer/index.html"),
    )
        .into_response()
}

/// `GET /viewer/{file}`.
pub(crate) async fn file(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (_, ty, bytes) = FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| ApiError::NotFound(format!("no viewer file {name:?}")))?;
    Ok(([(CONTENT_TYPE, *ty), (CACHE_CONTROL, "no-cache")], *bytes).into_response())
}
