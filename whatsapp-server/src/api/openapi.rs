//! The OpenAPI document (`/api/openapi.json`, generated from the handlers by utoipa) and the
//! Swagger UI at `/api/docs`, served from assets compiled into the binary (no CDN).
//!
//! Each handler's annotation declares what only it answers (its success, its 409s). What
//! every route of a kind answers is added here, once, by [`Completeness`]: the error
//! answers of the extractors and layers every route goes through (a bad path, query or
//! body, a missing key, a body too large or not JSON, a request time-out, a database that is
//! down, full or read-only), the two ways to present a key, and the syntax of every path
//! parameter, by name. `scripts/openapi-fuzz.sh` checks the document against the live
//! server (schemathesis, in CI).

use axum::Router;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    Content, ObjectBuilder, Ref, RefOr, ResponseBuilder, Schema, SchemaFormat, Type,
    schema::SchemaType,
};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::{admin, backups, error, history, messages, sessions};
use crate::state::AppState;

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
        history::list_chats, history::list_messages,
        backups::backup_now, backups::list_backups, backups::restore, backups::fallback,
        admin::create_tenant, admin::list_tenants, admin::get_tenant, admin::delete_tenant,
        admin::create_key, admin::list_keys, admin::revoke_key, admin::set_webhook,
        admin::clear_webhook, admin::list_outbox, admin::replay_outbox,
        admin::list_deleted_sessions, admin::recover_deleted_session,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&Security, &Completeness),
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

/// The syntax of a session id (`[a-z0-9_-]{1,64}`), as [`whatsapp_core::SessionId`] checks it.
pub(super) const ID_PATTERN: &str = "^[a-z0-9_-]{1,64}$";

/// A session as a path names it: its id, or, for the admin, `<tenant>:<id>`.
pub(super) const SESSION_PATH_PATTERN: &str = "^([a-z0-9_-]{1,64}:)?[a-z0-9_-]{1,64}$";

/// A phone number as [`whatsapp_core::PhoneNumber`] reads it: 7 to 15 digits, the country
/// code first (not `0`), an optional leading `+`, spaces, `-`, `(`, `)` and `.` between them,
/// an optional `@c.us`. Surrounding white space is ignored.
pub(super) const PHONE_PATTERN: &str =
    r"^\s*\+?[ ().-]*[1-9]([ ().-]*[0-9]){6,14}[ ().-]*(@c\.us)?\s*$";

/// A recipient as [`whatsapp_core::Wid::recipient`] reads it: a phone number
/// ([`PHONE_PATTERN`] without the suffix), `<digits>@c.us`, or a group `<digits>@g.us` /
/// `<digits>-<digits>@g.us` (1 to 20 digits each, no leading 0).
pub(super) const RECIPIENT_PATTERN: &str = r"^\s*(\+?[ ().-]*[1-9]([ ().-]*[0-9]){6,14}[ ().-]*|[1-9][0-9]{6,14}@c\.us|[1-9][0-9]{0,19}(-[1-9][0-9]{0,19})?@g\.us)\s*$";

/// A WID as [`whatsapp_core::Wid::parse`] reads it: digits (a group may add `-<digits>`),
/// `@`, and one of the servers `c.us`, `g.us`, `lid`, `s.whatsapp.net`.
pub(super) const WID_PATTERN: &str = r"^[0-9]+(-[0-9]+)?@(c\.us|g\.us|lid|s\.whatsapp\.net)$";

/// A text that is not only white space.
pub(super) const TEXT_PATTERN: &str = r"\S";

/// Adds what every route of a kind answers, the key schemes, and the path parameters'
/// syntax (see the module docs).
struct Completeness;

/// A constraint on a request body's field that its handler checks.
struct BodyField {
    schema: &'static str,
    property: &'static str,
    pattern: Option<&'static str>,
    /// In characters.
    min_length: Option<usize>,
    /// In characters.
    max_length: Option<usize>,
    /// A JSON Schema `format` (`email`, `uri`).
    format: Option<&'static str>,
}

impl BodyField {
    const fn new(schema: &'static str, property: &'static str) -> Self {
        BodyField {
            schema,
            property,
            pattern: None,
            min_length: None,
            max_length: None,
            format: None,
        }
    }

    const fn pattern(mut self, pattern: &'static str) -> Self {
        self.pattern = Some(pattern);
        self
    }

    const fn length(mut self, min: usize, max: Option<usize>) -> Self {
        self.min_length = Some(min);
        self.max_length = max;
        self
    }

    const fn format(mut self, format: &'static str) -> Self {
        self.format = Some(format);
        self
    }
}

/// The request bodies' fields the handlers check beyond their type.
const BODY_FIELDS: &[BodyField] = &[
    BodyField::new("CreateSession", "id").pattern(ID_PATTERN),
    BodyField::new("CreateSession", "tenant").pattern(ID_PATTERN),
    BodyField::new("CreateSession", "owner_email").format("email"),
    BodyField::new("CreateTenant", "id").pattern(ID_PATTERN),
    BodyField::new("RecoverRequest", "id").pattern(ID_PATTERN),
    BodyField::new("PairingCodeRequest", "phone").pattern(PHONE_PATTERN),
    BodyField::new("SendMessage", "to").pattern(RECIPIENT_PATTERN),
    BodyField::new("SendMessage", "text")
        .pattern(TEXT_PATTERN)
        .length(1, Some(crate::messaging::service::MAX_TEXT_CHARS)),
    BodyField::new("SendMessage", "idempotency_key").length(
        1,
        Some(crate::messaging::service::MAX_IDEMPOTENCY_KEY_CHARS),
    ),
    BodyField::new("SetWebhook", "url").format("uri"),
    BodyField::new("SetWebhook", "secret").length(16, None),
];

impl Modify for Completeness {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            for rule in BODY_FIELDS {
                let field = match components.schemas.get_mut(rule.schema) {
                    Some(RefOr::T(Schema::Object(object))) => {
                        object.properties.get_mut(rule.property)
                    }
                    _ => None,
                };
                let Some(RefOr::T(Schema::Object(field))) = field else {
                    panic!(
                        "OpenAPI: no field {}.{} to constrain",
                        rule.schema, rule.property
                    );
                };
                if let Some(pattern) = rule.pattern {
                    field.pattern = Some(pattern.to_owned());
                }
                field.min_length = rule.min_length.or(field.min_length);
                field.max_length = rule.max_length.or(field.max_length);
                if let Some(format) = &rule.format {
                    field.format = Some(SchemaFormat::Custom((*format).to_owned()));
                }
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (false, item.get.as_mut()),
                (true, item.post.as_mut()),
                (true, item.put.as_mut()),
                (true, item.delete.as_mut()),
                (true, item.patch.as_mut()),
            ];
            for (writes, op) in operations {
                if let Some(op) = op {
                    complete(path, writes, op);
                }
            }
        }
    }
}

/// Completes one operation of `path`; `writes` for the methods that store something.
fn complete(path: &str, writes: bool, op: &mut Operation) {
    let api = path.starts_with("/api/");
    let params = op.parameters.get_or_insert_with(Vec::new);
    let mut has_path = false;
    let mut has_query = false;
    for param in params.iter_mut() {
        let RefOr::T(param) = param else { continue };
        match param.parameter_in {
            ParameterIn::Path => {
                has_path = true;
                if let Some(pattern) = path_pattern(path, &param.name) {
                    param.schema = Some(RefOr::T(string_matching(pattern)));
                }
            }
            ParameterIn::Query => has_query = true,
            _ => {}
        }
    }
    let has_body = op.request_body.is_some();
    // An optional body is the object or nothing; utoipa spells `Option<T>` as `T` or `null`,
    // which the handlers do not take.
    if let Some(RefOr::T(body)) = op.request_body.as_mut() {
        for content in body.content.values_mut() {
            let RefOr::T(content) = content else { continue };
            if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema
                && let [RefOr::Ref(object), RefOr::T(Schema::Object(null))] =
                    one_of.items.as_slice()
                && null.schema_type == SchemaType::Type(Type::Null)
            {
                content.schema = Some(RefOr::Ref(object.clone()));
            }
        }
    }
    let mut add = |status: u16, description: &str| {
        let key = status.to_string();
        op.responses
            .responses
            .entry(key)
            .or_insert_with(|| RefOr::T(error_response(description)));
    };
    if has_path || has_query || has_body {
        add(
            400,
            "invalid input: a path segment, query parameter or body field (named in the message)",
        );
    }
    if has_path {
        add(404, "not found (another tenant's session answers the same)");
    }
    if path.starts_with("/api/sessions/{id}") {
        add(
            409,
            "the admin named a session by a name several tenants use (`ambiguous`: name it as `<tenant>:<id>`), or the action does not fit its status",
        );
    }
    if has_body {
        add(413, "the body is larger than the route accepts");
        add(415, "the body is not `application/json`");
    }
    add(408, "not answered within `HTTP_REQUEST_TIMEOUT`");
    add(500, "an internal error (details in the server's log)");
    if api {
        add(401, "no key, or an unknown or revoked one");
        add(
            403,
            "the key may not do this (a tenant's key on an admin route)",
        );
        add(
            503,
            "the database (or another dependency) is unavailable or read-only",
        );
        op.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("api_key", Vec::<String>::new()),
        ]);
    }
    if api && writes {
        add(507, "the database's disk is full: nothing was stored");
    }
    // OpenAPI requires a description on every answer.
    for (status, response) in op.responses.responses.iter_mut() {
        if let RefOr::T(response) = response
            && response.description.is_empty()
        {
            response.description = status
                .parse::<u16>()
                .ok()
                .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason())
                .unwrap_or("see the body")
                .to_owned();
        }
    }
}

/// The syntax of path parameter `name` of `path`.
fn path_pattern(path: &str, name: &str) -> Option<&'static str> {
    match name {
        "id" if path.starts_with("/api/sessions/") => Some(SESSION_PATH_PATTERN),
        "tenant" => Some(ID_PATTERN),
        "phone" => Some(PHONE_PATTERN),
        "instance" => Some(ID_PATTERN),
        "chat" => Some(WID_PATTERN),
        _ => None,
    }
}

fn string_matching(pattern: &str) -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .pattern(Some(pattern))
            .build(),
    )
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(RefOr::<Schema>::Ref(Ref::from_schema_name(
                "ErrorBody",
            )))),
        )
        .build()
}

pub(super) fn routes() -> Router<AppState> {
    Router::from(SwaggerUi::new("/api/docs").url("/api/openapi.json", ApiDoc::openapi()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use whatsapp_core::{PhoneNumber, SessionId, Wid};

    fn document() -> Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap()
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
        out
    }

    #[test]
    fn every_api_operation_declares_both_keys_and_its_error_answers() {
        let doc = document();
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["api_key"]["name"], "X-Api-Key");
        let mut checked = 0;
        for (path, method, op) in operations(&doc) {
            let responses = op["responses"].as_object().unwrap();
            let has = |status: &str| responses.contains_key(status);
            for (status, response) in responses {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path}: answer {status} has no description"
                );
            }
            assert!(has("408") && has("500"), "{method} {path}: {responses:?}");
            if !path.starts_with("/api/") {
                continue;
            }
            checked += 1;
            let security: Vec<&str> = op["security"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
                .collect();
            assert_eq!(security, ["bearer", "api_key"], "{method} {path}");
            for status in ["401", "403", "503"] {
                assert!(has(status), "{method} {path} lacks {status}");
            }
            if path.contains('{') {
                assert!(has("400") && has("404"), "{method} {path}");
            }
            if op.get("requestBody").is_some() {
                assert!(has("400") && has("413") && has("415"), "{method} {path}");
            }
            if method != "get" {
                assert!(has("507"), "{method} {path}");
            }
        }
        assert!(checked >= 30, "only {checked} API operations");
    }

    #[test]
    fn path_parameters_and_the_message_body_carry_their_syntax() {
        let doc = document();
        let param = |path: &str, method: &str, name: &str| -> Value {
            doc["paths"][path][method]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{method} {path}: no parameter {name}"))["schema"]
                .clone()
        };
        assert_eq!(
            param("/api/sessions/{id}", "get", "id")["pattern"],
            SESSION_PATH_PATTERN
        );
        assert_eq!(
            param("/api/sessions/{id}/numbers/{phone}", "get", "phone")["pattern"],
            PHONE_PATTERN
        );
        assert_eq!(
            param("/api/tenants/{tenant}", "get", "tenant")["pattern"],
            ID_PATTERN
        );
        let message = &doc["components"]["schemas"]["SendMessage"]["properties"];
        assert_eq!(message["text"]["maxLength"], 65_536);
        assert_eq!(message["text"]["minLength"], 1);
        assert_eq!(message["to"]["pattern"], RECIPIENT_PATTERN);
        assert_eq!(message["idempotency_key"]["maxLength"], 200);
        let create = &doc["components"]["schemas"]["CreateSession"]["properties"];
        assert_eq!(create["id"]["pattern"], ID_PATTERN);
        // An optional body may be left out, and is an object when given.
        let restore = &doc["paths"]["/api/sessions/{id}/restore"]["post"]["requestBody"];
        assert_ne!(restore["required"], true);
        assert_eq!(
            restore["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/RestoreRequest"
        );
    }

    /// The patterns say what the validators accept: one corpus, both judges.
    #[test]
    fn the_patterns_agree_with_the_validators() {
        let matches = |pattern: &str, s: &str| regex::Regex::new(pattern).unwrap().is_match(s);
        let phones = [
            "34600000000",
            "+34 600 000 000",
            "+1 (555) 123-4567",
            "1234567",
            "123456789012345",
            "34600000000@c.us",
            " 34600000000 ",
            "123456",
            "1234567890123456",
            "0600000000",
            "+0034600",
            "34600a00000",
            "",
            "+",
            "3460000000+0",
            "34.600.000.000",
            "@c.us",
            "34600000000@g.us",
        ];
        for phone in phones {
            assert_eq!(
                matches(PHONE_PATTERN, phone),
                PhoneNumber::new(phone).is_ok(),
                "phone {phone:?}"
            );
        }
        let recipients = [
            "34600000000",
            "34600000000@c.us",
            "+34 600 000 000",
            "120363000000000000@g.us",
            "34600000000-1600000000@g.us",
            "0600000000@c.us",
            "34600000000@s.whatsapp.net",
            "123@g.us",
            "0123@g.us",
            "1-0@g.us",
            "123456789012345678901@g.us",
            "34 600 000 000@c.us",
            "",
            "abc",
            "34600000000@c.us@c.us",
        ];
        for to in recipients {
            assert_eq!(
                matches(RECIPIENT_PATTERN, to),
                Wid::recipient(to).is_ok(),
                "recipient {to:?}"
            );
        }
        let ids = [
            "demo",
            "a",
            "shop_1-b",
            "",
            "Demo",
            "a b",
            "ä",
            &"x".repeat(64),
            &"x".repeat(65),
        ];
        for id in ids {
            assert_eq!(
                matches(ID_PATTERN, id),
                SessionId::new(id).is_ok(),
                "id {id:?}"
            );
        }
        assert!(matches(SESSION_PATH_PATTERN, "acme:shop"));
        assert!(!matches(SESSION_PATH_PATTERN, "acme:shop:x"));
        assert!(matches(TEXT_PATTERN, " hi "));
        assert!(!matches(TEXT_PATTERN, " \n\t"));
    }
}
