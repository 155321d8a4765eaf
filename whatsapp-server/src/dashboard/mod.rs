//! The operator/tenant dashboard: one static page, compiled into the binary, that signs in
//! with an API key and drives the REST API (`/api/sessions…`) from the browser.
//!
//! The page needs no build step and loads nothing from other origins, so the strict
//! Content-Security-Policy below holds: scripts and styles come only from this server, and
//! images only from here, `data:` or `blob:` (the QR code is fetched with the API key and
//! shown through a `blob:` URL, since an `<img src>` cannot send an `Authorization` header).
//! No page may frame it (`frame-ancestors 'none'`, `X-Frame-Options: DENY`), so a key typed
//! into it cannot be clickjacked; it sends no referrer.
//!
//! # Routes
//!
//! - `GET /`: the page (`index.html`);
//! - `GET /dashboard/app.js`: its script;
//! - `GET /dashboard/style.css`: its style sheet.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;

/// The page.
const INDEX_HTML: &str = include_str!("index.html");
/// The page's script (plain ES2020, no framework).
const APP_JS: &str = include_str!("app.js");
/// The page's style sheet.
const STYLE_CSS: &str = include_str!("style.css");

/// Same-origin only; `data:`/`blob:` images for the QR code; never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The security headers of every dashboard file (tower-http's `SetResponseHeaderLayer`).
const SECURITY_HEADERS: [(header::HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// The dashboard: `/` and its assets under `/dashboard/`, with the security headers.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset("text/css", STYLE_CSS) }),
        );
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router
}

/// One compiled-in file with the dashboard's headers. `no-cache` makes the browser
/// revalidate, so a new release's page and script are never mixed with stale ones.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    async fn get_path(path: &str) -> Response {
        routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body_text(response: Response) -> String {
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(&name)
            .unwrap_or_else(|| panic!("missing header {name}"))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn serves_each_file_with_its_type_and_the_security_headers() {
        let cases = [
            ("/", "text/html; charset=utf-8", INDEX_HTML),
            ("/dashboard/app.js", "text/javascript", APP_JS),
            ("/dashboard/style.css", "text/css", STYLE_CSS),
        ];
        for (path, content_type, body) in cases {
            let response = get_path(path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(header_of(&response, header::CONTENT_TYPE), content_type);
            assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
            assert_eq!(
                header_of(&response, header::CONTENT_SECURITY_POLICY),
                "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
                 script-src 'self'; connect-src 'self'; object-src 'none'; \
                 base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
            );
            assert_eq!(
                header_of(&response, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff"
            );
            assert_eq!(header_of(&response, header::X_FRAME_OPTIONS), "DENY");
            assert_eq!(header_of(&response, header::REFERRER_POLICY), "no-referrer");
            assert_eq!(body_text(response).await, body, "{path}");
        }
    }

    #[tokio::test]
    async fn other_paths_and_methods_are_refused() {
        assert_eq!(
            get_path("/dashboard/missing.js").await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get_path("/index.html").await.status(),
            StatusCode::NOT_FOUND
        );
        let post = routes::<()>()
            .oneshot(
                Request::builder()
                    .method(Method::POST)
                    .uri("/")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn merges_into_a_router_with_state() {
        #[derive(Clone)]
        struct Shared;
        let app = Router::new()
            .route("/api/ping", get(|| async { "pong" }))
            .merge(routes())
            .with_state(Shared);
        let response = app
            .oneshot(
                Request::get("/dashboard/style.css")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[test]
    fn page_loads_its_assets_and_nothing_from_other_origins() {
        assert!(INDEX_HTML.contains(r#"src="/dashboard/app.js""#));
        assert!(INDEX_HTML.contains(r#"href="/dashboard/style.css""#));
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("style.css", STYLE_CSS),
        ] {
            for scheme in ["http://", "https://", "//cdn", "@import"] {
                assert!(!text.contains(scheme), "{name} references {scheme}");
            }
        }
        // The strict CSP forbids inline scripts, inline styles and event-handler attributes.
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(!INDEX_HTML.contains("<style"));
        assert!(!INDEX_HTML.contains("style="));
        assert!(!INDEX_HTML.contains(" onclick="));
        // Server data is inserted as text, never parsed as markup.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
    }

    #[test]
    fn page_keeps_the_hooks_the_browser_tests_use() {
        for id in [
            "login",
            "api-key",
            "login-submit",
            "sessions",
            "create",
            "new-id",
            "new-email",
            "create-submit",
            "error",
            "sign-out",
        ] {
            assert!(
                INDEX_HTML.contains(&format!(r#"id="{id}""#)),
                "index.html lacks #{id}"
            );
        }
        for hook in [
            "data-session",
            "data-field",
            "data-qr",
            "data-action",
            "wa_api_key",
        ] {
            assert!(APP_JS.contains(hook), "app.js lacks {hook}");
        }
    }
}
