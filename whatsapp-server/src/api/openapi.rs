//! The OpenAPI document (`/api/openapi.json`, generated from the handlers by utoipa) and the
//! Swagger UI at `/api/docs`, served from assets compiled into the binary (no CDN).

use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::{admin, backups, error, messages, sessions};
use crate::app::AppState;

/// The API's OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "WhatsApp keepalive",
        description = "Keeps WhatsApp Web sessions connected: sessions, QR linking, queued messages, backups, tenants, webhooks.",
    ),
    paths(
        super::healthz, super::readyz, super::metrics,
        sessions::create_session, sessions::list_sessions, sessions::get_session,
        sessions::delete_session, sessions::start_session, sessions::stop_session,
        sessions::restart_session, sessions::logout_session, sessions::get_qr,
        sessions::pairing_code,
        messages::send_message, messages::get_message, messages::check_number,
        backups::backup_now, backups::list_backups, backups::restore, backups::fallback,
        admin::create_tenant, admin::list_tenants, admin::get_tenant, admin::delete_tenant,
        admin::create_key, admin::list_keys, admin::revoke_key, admin::set_webhook,
        admin::clear_webhook, admin::list_outbox, admin::replay_outbox,
        admin::list_deleted_sessions, admin::recover_deleted_session,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&Security),
    tags(
        (name = "sessions", description = "Create, link (QR or pairing code), start, stop, log out"),
        (name = "messages", description = "Queued, paced, durable outgoing texts; number checks"),
        (name = "backups", description = "Backups of the login, restore, fallback e-mail"),
        (name = "tenants", description = "Tenants, API keys, webhooks"),
        (name = "outbox", description = "E-mails and webhooks waiting or dead-lettered"),
        (name = "health", description = "Liveness, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub(super) fn routes() -> Router<AppState> {
    Router::from(SwaggerUi::new("/api/docs").url("/api/openapi.json", ApiDoc::openapi()))
}
