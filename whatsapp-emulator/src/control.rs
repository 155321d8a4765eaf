//! The JSON control API under `/_emulator/`: drives the emulator like a phone and a
//! network would. Handlers only extract, call [`Shared`] and map the error.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::api::{ApiError, DeviceInfo, Direction, IncomingMessage, ScanRequest};
use crate::server::{ControlError, Shared};

type S = State<Arc<Shared>>;

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ControlError::NotFound(m) => {
                (StatusCode::NOT_FOUND, "not_found", format!("{m} not found"))
            }
            ControlError::Invalid(m) => (StatusCode::BAD_REQUEST, "invalid_input", m),
            ControlError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ControlError::Expired(m) => (StatusCode::GONE, "expired", m),
        };
        let body = ApiError {
            error: code.to_owned(),
            message,
        };
        (status, Json(body)).into_response()
    }
}

type Reply<T> = Result<Json<T>, ControlError>;

pub(crate) async fn devices(State(s): S) -> Json<Vec<DeviceInfo>> {
    Json(s.devices())
}

pub(crate) async fn device(State(s): S, Path(id): Path<String>) -> Reply<DeviceInfo> {
    s.device(&id).map(Json)
}

pub(crate) async fn scan(State(s): S, Json(req): Json<ScanRequest>) -> Response {
    match s.scan(req) {
        Ok(r) => Json(r).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct DropBody {
    ms: u64,
}

pub(crate) async fn drop_device(
    State(s): S,
    Path(id): Path<String>,
    Json(body): Json<DropBody>,
) -> Reply<DeviceInfo> {
    s.drop_device(&id, body.ms).map(Json)
}

pub(crate) async fn conflict(State(s): S, Path(id): Path<String>) -> Reply<DeviceInfo> {
    s.conflict(&id).map(Json)
}

pub(crate) async fn unlink(State(s): S, Path(id): Path<String>) -> Reply<DeviceInfo> {
    s.unlink(&id).map(Json)
}

pub(crate) async fn deprecate(State(s): S, Path(id): Path<String>) -> Reply<DeviceInfo> {
    s.deprecate(&id).map(Json)
}

#[derive(Debug, Deserialize)]
pub(crate) struct AccountBody {
    phone: String,
}

pub(crate) async fn add_account(State(s): S, Json(body): Json<AccountBody>) -> Reply<Vec<String>> {
    s.add_account(&body.phone).map(Json)
}

pub(crate) async fn accounts(State(s): S) -> Json<Vec<String>> {
    Json(s.accounts())
}

#[derive(Debug, Deserialize)]
pub(crate) struct MessagesQuery {
    direction: Option<String>,
}

pub(crate) async fn messages(State(s): S, Query(q): Query<MessagesQuery>) -> Response {
    let direction = match q.direction.as_deref() {
        None | Some("out") => Some(Direction::Out),
        Some("in") => Some(Direction::In),
        Some("all") => None,
        Some(other) => {
            return ControlError::Invalid(format!(
                "direction must be out, in or all, not {other:?}"
            ))
            .into_response();
        }
    };
    Json(s.messages(direction)).into_response()
}

pub(crate) async fn incoming(State(s): S, Json(msg): Json<IncomingMessage>) -> Response {
    match s.incoming(msg) {
        Ok(r) => (StatusCode::CREATED, Json(r)).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn reset(State(s): S) -> StatusCode {
    s.reset();
    StatusCode::NO_CONTENT
}
