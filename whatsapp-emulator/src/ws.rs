//! The page's WebSocket at `/ws/chat`: JSON frames both ways, bridged to [`Shared`].

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::server::{ClientMsg, Outbound, Shared};

pub(crate) async fn upgrade(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| run(shared, socket))
}

async fn run(shared: Arc<Shared>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Outbound>();
    let conn_id = shared.next_conn_id();
    let mut device: Option<String> = None;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Outbound::Json(v)) => {
                    if sink.send(Message::Text(v.to_string().into())).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close) | None => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientMsg>(&text) {
                    Ok(msg) => device = shared.on_message(conn_id, &tx, device.take(), msg),
                    Err(e) => tracing::debug!(error = %e, "ignoring an unknown page message"),
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    if let Some(id) = device {
        shared.disconnected(&id, conn_id);
    }
}
