//! The JavaScript the driver runs in WhatsApp Web, written against
//! `shared/spec/wa-web-surface.md` only.
//!
//! Two kinds of script:
//! - the **bridge** ([`bridge_script`]), installed on every new document: it waits until the
//!   app is loaded, subscribes to the models, *then* reads their current values, and forwards
//!   everything through the CDP binding [`BINDING`] as JSON;
//! - **operations** ([`operation`]), one `Runtime.evaluate` each, that answer
//!   `{"ok": value}`, `{"missing": "<module>"}` or `{"error": "<text>"}`.

use std::time::Duration;

/// The name of the CDP binding (`window.__wkaBridge(json)`).
pub(crate) const BINDING: &str = "__wkaBridge";

/// Helpers shared by the bridge and every operation.
///
/// `need(name)` is `window.require(name)` that throws `{__wkaMissing: name}` instead of the
/// loader's own error, so a renamed module is reported by name. `qrPayload()` builds the
/// five-field QR payload, or `null` while there is no ref.
const PRELUDE: &str = r#"
const need = (name) => {
  let m;
  try { m = typeof window.require === 'function' ? window.require(name) : undefined; } catch (e) { m = undefined; }
  if (m === undefined || m === null) throw { __wkaMissing: name };
  return m;
};
const qrPayload = async () => {
  const ref = need('WAWebConnModel').Conn.ref;
  if (!ref) return null;
  const b64 = need('WABase64').encodeB64;
  const noise = await need('WAWebUserPrefsInfoStore').waNoiseInfo.get();
  const reg = await need('WAWebSignalStoreApi').waSignalStore.getRegistrationInfo();
  const adv = need('WAWebUserPrefsMultiDevice').getADVSecretKey();
  const platform = need('WAWebCompanionRegClientUtils').DEVICE_PLATFORM;
  return [ref, b64(noise.staticKeyPair.pubKey), b64(reg.identityKeyPair.pubKey), adv, platform].join(',');
};
"#;

/// The bridge, parameterised with how long it keeps waiting for the app to load.
///
/// Messages it sends (`k` is the kind):
/// - `loaded {version}`: `window.Debug.VERSION` and `window.require` exist;
/// - `missing {module}`: a module the driver needs is not (yet) known to `require`;
/// - `installed {version, state, synced}`: subscribed; these are the values read *after*
///   subscribing, so no change can fall between the two;
/// - `state {state}`, `ready`, `qr {payload}`, `logout`, `ack {id, ack}`,
///   `msg {id, from, body, t}`: the model events.
pub(crate) fn bridge_script(ready_timeout: Duration) -> String {
    let ready_ms = ready_timeout.as_millis();
    format!(
        r#"(() => {{
  if (window.__wkaInstalled) return;
  window.__wkaInstalled = true;
  const emit = (m) => {{ try {{ window['{BINDING}'](JSON.stringify(m)); }} catch (e) {{}} }};
  {PRELUDE}
  const optional = (name) => {{ try {{ return need(name); }} catch (e) {{ emit({{ k: 'missing', module: name, optional: true }}); return undefined; }} }};
  const sendQr = () => {{
    qrPayload().then((payload) => {{ if (payload) emit({{ k: 'qr', payload }}); }})
      .catch((e) => emit(e && e.__wkaMissing ? {{ k: 'missing', module: e.__wkaMissing, optional: true }} : {{ k: 'error', error: String(e) }}));
  }};
  const install = (Socket) => {{
    const connModel = optional('WAWebConnModel');
    const cmdModule = optional('WAWebCmd');
    const collections = optional('WAWebCollections');
    // Subscribe first ...
    Socket.on('change:state', (_m, state) => {{
      emit({{ k: 'state', state }});
      if (state === 'UNPAIRED') sendQr();
    }});
    Socket.on('change:hasSynced', (_m, synced) => {{ if (synced) emit({{ k: 'ready' }}); }});
    if (connModel && connModel.Conn) connModel.Conn.on('change:ref', () => sendQr());
    if (cmdModule && cmdModule.Cmd) {{
      cmdModule.Cmd.on('logout', () => emit({{ k: 'logout' }}));
      cmdModule.Cmd.on('logout_from_bridge', () => emit({{ k: 'logout' }}));
    }}
    if (collections && collections.Msg) {{
      collections.Msg.on('add', (msg) => {{
        try {{
          if (!msg || !msg.isNewMsg || (msg.id && msg.id.fromMe)) return;
          const from = msg.from && (msg.from._serialized || String(msg.from));
          emit({{ k: 'msg', id: msg.id && (msg.id._serialized || String(msg.id)), from, body: msg.body || '', t: msg.t || 0 }});
        }} catch (e) {{}}
      }});
      collections.Msg.on('change:ack', (msg, ack) => {{
        try {{ emit({{ k: 'ack', id: msg.id._serialized || String(msg.id), ack }}); }} catch (e) {{}}
      }});
    }}
    // ... then read the current values.
    emit({{ k: 'installed', version: String(window.Debug.VERSION), state: Socket.state, synced: !!Socket.hasSynced }});
    if (Socket.state === 'UNPAIRED') sendQr();
  }};
  const deadline = Date.now() + {ready_ms};
  let loaded = false;
  let lastMissing = null;
  const wait = () => {{
    if (!(window.Debug && window.Debug.VERSION && typeof window.require === 'function')) {{
      if (Date.now() < deadline) setTimeout(wait, 50);
      return;
    }}
    if (!loaded) {{ loaded = true; emit({{ k: 'loaded', version: String(window.Debug.VERSION) }}); }}
    let Socket;
    try {{ Socket = need('WAWebSocketModel').Socket; }} catch (e) {{ Socket = undefined; }}
    if (!Socket) {{
      if (lastMissing !== 'WAWebSocketModel') {{ lastMissing = 'WAWebSocketModel'; emit({{ k: 'missing', module: 'WAWebSocketModel' }}); }}
      if (Date.now() < deadline) setTimeout(wait, 100);
      return;
    }}
    install(Socket);
  }};
  wait();
}})();"#
    )
}

/// Wraps an async function body into an expression for `Runtime.evaluate` (with
/// `awaitPromise`) that never throws: it resolves to `{ok}`, `{missing}`, `{loading}` or
/// `{error}`.
///
/// The body runs once the app is loaded (`window.Debug.VERSION`, `window.require` and
/// `WAWebSocketModel`), waiting for at most `wait`: a call made while the page reloads (after
/// a logout, say) lands in the new document and must not mistake "not loaded yet" for "module
/// renamed".
pub(crate) fn operation(body: &str, wait: Duration) -> String {
    let wait_ms = wait.as_millis();
    format!(
        r#"(async () => {{
  {PRELUDE}
  const until = Date.now() + {wait_ms};
  for (;;) {{
    let socket;
    const loaded = !!(window.Debug && window.Debug.VERSION && typeof window.require === 'function');
    if (loaded) {{ try {{ socket = need('WAWebSocketModel').Socket; }} catch (e) {{ socket = undefined; }} }}
    if (socket) break;
    if (Date.now() >= until) return loaded ? {{ missing: 'WAWebSocketModel' }} : {{ loading: true }};
    await new Promise((r) => setTimeout(r, 50));
  }}
  try {{
    const value = await (async () => {{ {body} }})();
    return {{ ok: value === undefined ? null : value }};
  }} catch (e) {{
    if (e && e.__wkaMissing) return {{ missing: e.__wkaMissing }};
    return {{ error: String((e && e.message) || e) }};
  }}
}})()"#
    )
}

/// A JSON string literal (safe to splice into a script).
pub(crate) fn lit(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// `Socket.state`.
pub(crate) const STATE: &str = "return need('WAWebSocketModel').Socket.state;";

/// The QR payload if the state is `UNPAIRED`, else `null`.
pub(crate) const QR: &str = "if (need('WAWebSocketModel').Socket.state !== 'UNPAIRED') return null; return await qrPayload();";

/// `sendPresenceAvailable()`.
pub(crate) const PRESENCE: &str =
    "await need('WAWebPresenceChatAction').sendPresenceAvailable(); return null;";

/// `Socket.reconnect()`.
pub(crate) const RECONNECT: &str =
    "await need('WAWebSocketModel').Socket.reconnect(); return null;";

/// `Socket.takeover()`.
pub(crate) const TAKEOVER: &str = "await need('WAWebSocketModel').Socket.takeover(); return null;";

/// `Socket.logout()`.
pub(crate) const LOGOUT: &str = "await need('WAWebSocketModel').Socket.logout(); return null;";

/// Own WID, push name and platform, or `null` when not logged in.
pub(crate) const ACCOUNT_INFO: &str = r#"
const meUser = need('WAWebUserPrefsMeUser');
const me = meUser.getMaybeMePnUser() || (typeof meUser.getMaybeMeLidUser === 'function' ? meUser.getMaybeMeLidUser() : null);
if (!me) return null;
const conn = need('WAWebConnModel').Conn.serialize() || {};
return { wid: me._serialized || String(me), pushname: conn.pushname ?? null, platform: conn.platform ?? null };
"#;

/// A screen wake lock, requested without waiting (headless Chromium may refuse it).
pub(crate) const WAKE_LOCK: &str = r#"
try { if (navigator.wakeLock && navigator.wakeLock.request) navigator.wakeLock.request('screen').catch(() => {}); } catch (e) {}
return null;
"#;

/// `queryWidExists(createWid('<digits>@c.us'))`: the WID or `null`.
pub(crate) fn number_exists(digits: &str) -> String {
    format!(
        r#"const wid = need('WAWebWidFactory').createWid({to});
const res = await need('WAWebQueryExistsJob').queryWidExists(wid);
if (!res || !res.wid) return null;
return res.wid._serialized || String(res.wid);"#,
        to = lit(&format!("{digits}@c.us"))
    )
}

/// The five steps of sending a text (spec, "Sending a text"); answers the message id once
/// WhatsApp Web accepted it into the chat.
pub(crate) fn send_text(to: &str, body: &str) -> String {
    format!(
        r#"const wid = need('WAWebWidFactory').createWid({to});
const collections = need('WAWebCollections');
let chat = collections.Chat.get(wid);
if (!chat) chat = (await need('WAWebFindChatAction').findOrCreateLatestChat(wid)).chat;
if (!chat) throw new Error('no chat for ' + {to});
const meUser = need('WAWebUserPrefsMeUser');
const me = meUser.getMaybeMePnUser() || (typeof meUser.getMaybeMeLidUser === 'function' ? meUser.getMaybeMeLidUser() : null);
if (!me) throw new Error('not logged in');
// Like the reference client: mark the chat seen while announcing presence (best effort).
try {{
  const stream = window.require('WAWebStreamModel').Stream;
  stream.markAvailable();
  try {{ await window.require('WAWebUpdateUnreadChatAction').sendSeen({{ chat }}); }} finally {{ stream.markUnavailable(); }}
}} catch (e) {{}}
const MsgKey = need('WAWebMsgKey');
const key = new MsgKey({{ from: me, to: chat.id, id: await MsgKey.newId(), selfDir: 'out' }});
const ephemeral = need('WAWebGetEphemeralFieldsMsgActionsUtils').getEphemeralFields(chat);
const msg = {{ id: key, ack: 0, body: {body}, from: me, to: chat.id, local: true, self: 'out', t: Math.floor(Date.now() / 1000), isNewMsg: true, type: 'chat', ...ephemeral }};
const [added, sent] = need('WAWebSendMsgChatAction').addAndSendMsgToChat(chat, msg);
Promise.resolve(sent).catch(() => {{}});
await added;
return key._serialized;"#,
        to = lit(to),
        body = lit(body)
    )
}

/// The pairing-code flow for a phone number: answers the 8-character code.
pub(crate) fn pairing_code(digits: &str) -> String {
    format!(
        r#"const api = need('WAWebAltDeviceLinkingApi');
api.setPairingType('ALT_DEVICE_LINKING');
await api.initializeAltDeviceLinking();
return await api.startAltLinkingFlow({digits}, true);"#,
        digits = lit(digits)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_cannot_break_out_of_the_script() {
        let body = "\"); alert('x'); (\"\n`${1}`";
        let js = send_text("34600000000@c.us", body);
        assert!(js.contains(&lit(body)));
        assert_eq!(lit("a\"b"), r#""a\"b""#);
    }

    #[test]
    fn bridge_names_the_binding_and_timeout() {
        let js = bridge_script(Duration::from_secs(30));
        assert!(js.contains("window['__wkaBridge']"));
        assert!(js.contains("Date.now() + 30000"));
        // Subscriptions come before the first read of the current state.
        let subscribe = js.find("Socket.on('change:state'").unwrap();
        let read = js.find("state: Socket.state").unwrap();
        assert!(subscribe < read);
    }
}
