//! The web app: our own HTML and JavaScript, compiled in, nothing from a CDN.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use crate::server::Shared;

const INDEX: &str = include_str!("../web/index.html");
const RUNTIME_JS: &str = include_str!("../web/runtime.js");
const APP_JS: &str = include_str!("../web/app.js");

pub(crate) async fn index(State(shared): State<Arc<Shared>>) -> Response {
    // `</` cannot appear in the JSON of our config, but escape it anyway: it sits in a
    // <script> element.
    let config = shared
        .config
        .page_config()
        .to_string()
        .replace("</", "<\\/");
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(INDEX.replace("{{CONFIG}}", &config)),
    )
        .into_response()
}

pub(crate) async fn runtime_js() -> Response {
    js(RUNTIME_JS)
}

pub(crate) async fn app_js() -> Response {
    js(APP_JS)
}

fn js(body: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
