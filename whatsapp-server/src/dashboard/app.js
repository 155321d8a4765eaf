// WhatsApp keepalive dashboard: signs in with an API key and drives the REST API.
//
// Plain ES2020, no framework, no build step. Every piece of server data is inserted with
// textContent, never parsed as markup, and the page loads nothing from other origins.
//
// Hooks kept stable for browser tests: #login, #api-key, #login-submit, #sessions,
// [data-session], [data-field="status"], [data-field="phone"], #create, #new-id,
// #new-email, #create-submit, img[data-qr], button[data-action], #error, #sign-out.

const KEY_STORAGE = 'wa_api_key';
const POLL_MS = 2000;
const QR_MS = 2000;
const STATUSES = [
  'created', 'starting', 'qr', 'authenticating', 'ready', 'reconnecting',
  'disconnected', 'error', 'logged_out', 'stopped',
];

const $ = (id) => document.getElementById(id);
const el = {
  login: $('login'),
  apiKey: $('api-key'),
  loginSubmit: $('login-submit'),
  app: $('app'),
  signOut: $('sign-out'),
  live: $('live'),
  errorBar: $('error-bar'),
  error: $('error'),
  errorDismiss: $('error-dismiss'),
  create: $('create'),
  newId: $('new-id'),
  newEmail: $('new-email'),
  createSubmit: $('create-submit'),
  sessions: $('sessions'),
  empty: $('empty'),
};

/** An error answer of the API (`{"error": {"code", "message"}}`), or a network failure. */
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---- state -------------------------------------------------------------------------

let apiKey = readKey();
/** Bumped on sign-in and sign-out, so answers to an older key's requests are dropped. */
let generation = 0;
let pollTimer = null;
/** Polls may overlap (an action polls at once): only the newest answer is rendered. */
let pollSeq = 0;
let renderedSeq = 0;
let lastUpdate = null;
/** session id -> { row, fields, session, qr } */
const rows = new Map();

function readKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || '';
  } catch (_) {
    return '';
  }
}

function writeKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch (_) {
    // Storage disabled (private mode): the key lives for this page only.
  }
}

// ---- errors ------------------------------------------------------------------------

/** Shows `message` in #error; `source` 'poll' marks errors the next good poll clears. */
function showError(message, source = '') {
  el.error.textContent = message;
  el.error.dataset.source = source;
  el.error.hidden = false;
  el.errorBar.hidden = false;
}

function clearError() {
  el.error.textContent = '';
  el.error.dataset.source = '';
  el.error.hidden = true;
  el.errorBar.hidden = true;
}

async function readError(response) {
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const text = await response.text();
    try {
      const body = JSON.parse(text);
      if (body && body.error && typeof body.error.message === 'string') {
        message = body.error.message;
        if (typeof body.error.code === 'string') code = body.error.code;
      }
    } catch (_) {
      if (text.trim()) message = `${message}: ${text.trim().slice(0, 300)}`;
    }
  } catch (_) {
    // The body could not be read: keep the status line.
  }
  return new ApiError(response.status, code, message);
}

// ---- API ---------------------------------------------------------------------------

/**
 * Calls the API with the current key. A 401 signs out and shows the server's message;
 * any other 4xx/5xx, or a network failure, throws an ApiError.
 */
async function api(method, path, body) {
  const key = apiKey;
  const gen = generation;
  const headers = { Authorization: `Bearer ${key}`, Accept: 'application/json' };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', `Cannot reach the server (${e.message}).`);
  }
  if (response.ok) return response;
  const error = await readError(response);
  // Only sign out if the key that was refused is still the one in use.
  if (response.status === 401 && gen === generation && key === apiKey) {
    signOut(error.message);
  }
  throw error;
}

const sessionPath = (id) => `/api/sessions/${encodeURIComponent(id)}`;

// ---- sign in / out -----------------------------------------------------------------

function showLogin() {
  el.app.hidden = true;
  el.signOut.hidden = true;
  el.live.hidden = true;
  el.login.hidden = false;
  el.apiKey.value = '';
  el.apiKey.focus();
}

function showApp() {
  el.login.hidden = true;
  el.app.hidden = false;
  el.signOut.hidden = false;
  el.live.hidden = false;
}

function signIn(key) {
  apiKey = key;
  writeKey(key);
  generation += 1;
  clearError();
  showApp();
  poll();
}

/** Forgets the key, stops every timer and shows the login form (with `message`, if any). */
function signOut(message) {
  generation += 1;
  apiKey = '';
  writeKey('');
  clearTimeout(pollTimer);
  pollTimer = null;
  lastUpdate = null;
  for (const id of [...rows.keys()]) removeRow(id);
  el.empty.hidden = true;
  if (message) showError(message);
  else clearError();
  showLogin();
}

el.login.addEventListener('submit', (event) => {
  event.preventDefault();
  const key = el.apiKey.value.trim();
  if (!key) {
    showError('Enter an API key.');
    return;
  }
  signIn(key);
});

el.signOut.addEventListener('click', () => signOut());
el.errorDismiss.addEventListener('click', clearError);

// ---- polling -----------------------------------------------------------------------

/** Fetches the session list, renders it and schedules the next poll. */
async function poll() {
  clearTimeout(pollTimer);
  pollTimer = null;
  const gen = generation;
  const seq = ++pollSeq;
  try {
    const response = await api('GET', '/api/sessions');
    const sessions = await response.json();
    if (gen !== generation || seq < renderedSeq) return;
    if (!Array.isArray(sessions)) {
      throw new ApiError(0, 'bad_response', 'The server sent an unexpected session list.');
    }
    renderedSeq = seq;
    render(sessions);
    lastUpdate = Date.now();
    if (el.error.dataset.source === 'poll') clearError();
  } catch (e) {
    if (gen !== generation) return;
    showError(e.message, 'poll');
  }
  updateLive();
  if (gen === generation) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, POLL_MS);
  }
}

function updateLive() {
  if (lastUpdate === null) {
    el.live.textContent = 'Connecting\u2026';
    el.live.className = 'live';
    return;
  }
  const stale = Date.now() - lastUpdate > 3 * POLL_MS;
  el.live.textContent = stale ? `Offline, last update ${relativeTime(lastUpdate)}` : 'Live';
  el.live.className = stale ? 'live live-stale' : 'live live-ok';
}

// ---- rendering ---------------------------------------------------------------------

function render(sessions) {
  const seen = new Set();
  let previous = null;
  for (const session of sessions) {
    if (!session || typeof session.id !== 'string') continue;
    seen.add(session.id);
    const entry = rows.get(session.id) || createRow(session.id);
    updateRow(entry, session);
    // Keep the server's order, moving rows only when needed (moving resets nothing, but
    // touching the DOM every two seconds is wasteful).
    const expected = previous ? previous.nextSibling : el.sessions.firstChild;
    if (expected !== entry.row) el.sessions.insertBefore(entry.row, expected);
    previous = entry.row;
  }
  for (const id of [...rows.keys()]) {
    if (!seen.has(id)) removeRow(id);
  }
  el.empty.hidden = rows.size > 0;
}

function cell(row, className) {
  const td = document.createElement('td');
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function field(parent, tag, name, className) {
  const node = document.createElement(tag);
  node.dataset.field = name;
  if (className) node.className = className;
  parent.appendChild(node);
  return node;
}

function actionButton(parent, action, label, id, className) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = `button ${className}`;
  button.dataset.action = action;
  button.textContent = label;
  button.setAttribute('aria-label', `${label} session ${id}`);
  button.addEventListener('click', () => runAction(action, id, button));
  parent.appendChild(button);
  return button;
}

function createRow(id) {
  const row = document.createElement('tr');
  row.dataset.session = id;

  const name = cell(row, 'col-session');
  const idNode = field(name, 'div', 'id', 'session-id');
  idNode.textContent = id;
  const fields = {
    pushName: field(name, 'div', 'push_name', 'muted'),
    tenant: field(name, 'div', 'tenant', 'muted small'),
    lastError: field(name, 'div', 'last_error', 'last-error small'),
  };

  const statusCell = cell(row, 'col-status');
  fields.status = field(statusCell, 'span', 'status', 'badge');
  fields.state = field(statusCell, 'div', 'state', 'muted small');
  fields.running = field(statusCell, 'div', 'running', 'small');
  const qrSlot = document.createElement('div');
  qrSlot.className = 'qr-slot';
  statusCell.appendChild(qrSlot);

  fields.phone = field(cell(row, 'col-phone'), 'span', 'phone', 'mono placeholder');
  fields.owner = field(cell(row, 'col-owner'), 'span', 'owner_email', 'placeholder');
  fields.lastSeen = field(cell(row, 'col-time'), 'time', 'last_seen_at', 'placeholder');
  fields.lastBackup = field(cell(row, 'col-time'), 'time', 'last_backup_at', 'placeholder');

  const actions = cell(row, 'col-actions');
  actionButton(actions, 'restart', 'Restart', id, 'button-small');
  actionButton(actions, 'logout', 'Log out', id, 'button-small');
  actionButton(actions, 'delete', 'Delete', id, 'button-small button-danger');

  const entry = { id, row, fields, qrSlot, session: null, qr: null };
  rows.set(id, entry);
  return entry;
}

function setText(node, text) {
  const value = text === null || text === undefined ? '' : String(text);
  if (node.textContent !== value) node.textContent = value;
}

function setTime(node, iso) {
  if (!iso) {
    setText(node, '');
    node.removeAttribute('datetime');
    node.removeAttribute('title');
    return;
  }
  const at = Date.parse(iso);
  if (Number.isNaN(at)) {
    setText(node, iso);
    return;
  }
  setText(node, relativeTime(at));
  if (node.getAttribute('datetime') !== iso) {
    node.setAttribute('datetime', iso);
    node.title = new Date(at).toLocaleString();
  }
}

function updateRow(entry, session) {
  entry.session = session;
  const f = entry.fields;
  const status = typeof session.status === 'string' ? session.status : 'unknown';
  setText(f.status, status);
  const badge = `badge badge-${STATUSES.includes(status) ? status : 'unknown'}`;
  if (f.status.className !== badge) f.status.className = badge;
  f.status.title = statusHint(status);

  setText(f.pushName, session.push_name);
  setText(f.tenant, session.tenant ? `tenant ${session.tenant}` : '');
  setText(f.lastError, session.last_error);
  setText(f.state, session.state && session.state !== status ? `state: ${session.state}` : '');
  if (typeof session.running === 'boolean') {
    setText(f.running, session.running ? 'browser running' : 'browser stopped');
    f.running.className = session.running ? 'small running' : 'small muted';
  } else {
    setText(f.running, '');
  }
  setText(f.phone, session.phone);
  setText(f.owner, session.owner_email);
  setTime(f.lastSeen, session.last_seen_at);
  setTime(f.lastBackup, session.last_backup_at);

  if (status === 'qr') startQr(entry);
  else stopQr(entry);
}

function removeRow(id) {
  const entry = rows.get(id);
  if (!entry) return;
  stopQr(entry);
  entry.row.remove();
  rows.delete(id);
}

function statusHint(status) {
  switch (status) {
    case 'created': return 'Created, not started yet';
    case 'starting': return 'The browser is starting';
    case 'qr': return 'Waiting for the QR code to be scanned';
    case 'authenticating': return 'QR scanned, signing in';
    case 'ready': return 'Connected to WhatsApp';
    case 'reconnecting': return 'Lost the connection, reconnecting';
    case 'disconnected': return 'Disconnected';
    case 'error': return 'Failed; see the error below the session id';
    case 'logged_out': return 'Logged out from the phone; restart to link again';
    case 'stopped': return 'Stopped';
    default: return '';
  }
}

/** "just now", "42 s ago", "3 min ago", "5 h ago", "2 days ago" (or "in …"). */
function relativeTime(at) {
  const seconds = Math.round((Date.now() - at) / 1000);
  const abs = Math.abs(seconds);
  let text;
  if (abs < 10) return 'just now';
  if (abs < 60) text = `${abs} s`;
  else if (abs < 3600) text = `${Math.floor(abs / 60)} min`;
  else if (abs < 86400) text = `${Math.floor(abs / 3600)} h`;
  else {
    const days = Math.floor(abs / 86400);
    text = days === 1 ? '1 day' : `${days} days`;
  }
  return seconds >= 0 ? `${text} ago` : `in ${text}`;
}

// ---- QR codes ----------------------------------------------------------------------

/**
 * While a session waits for its scan, fetches its QR (with the key, hence not a plain
 * <img src>) every QR_MS and shows it through a blob: URL. The <img data-qr> is inserted
 * only once an image has loaded, so it is never present without a picture.
 */
function startQr(entry) {
  if (entry.qr) return;
  const qr = { timer: null, img: null, url: null, stopped: false, gen: generation };
  entry.qr = qr;
  refreshQr(entry, qr);
}

function stopQr(entry) {
  const qr = entry.qr;
  if (!qr) return;
  entry.qr = null;
  qr.stopped = true;
  clearTimeout(qr.timer);
  if (qr.img) qr.img.remove();
  if (qr.url) URL.revokeObjectURL(qr.url);
}

async function refreshQr(entry, qr) {
  try {
    const response = await api('GET', `${sessionPath(entry.id)}/qr?format=svg`);
    const data = await response.arrayBuffer();
    if (qr.stopped || qr.gen !== generation) return;
    const type = (response.headers.get('Content-Type') || '').split(';')[0].trim();
    const blob = new Blob([data], { type: type.startsWith('image/') ? type : 'image/svg+xml' });
    const url = URL.createObjectURL(blob);
    // Decode off-screen first, so the visible image never shows a half-loaded picture.
    const probe = new Image();
    probe.src = url;
    try {
      await probe.decode();
    } catch (_) {
      URL.revokeObjectURL(url);
      throw new ApiError(0, 'bad_qr', `The QR code of session ${entry.id} could not be displayed.`);
    }
    if (qr.stopped) {
      URL.revokeObjectURL(url);
      return;
    }
    const old = qr.url;
    qr.url = url;
    if (!qr.img) {
      const img = document.createElement('img');
      img.dataset.qr = entry.id;
      img.className = 'qr';
      img.alt = `QR code for session ${entry.id}: scan it with WhatsApp on the phone (Linked devices)`;
      img.src = url;
      qr.img = img;
      img.addEventListener('load', () => {
        if (!qr.stopped && qr.img === img && !img.isConnected) entry.qrSlot.appendChild(img);
      }, { once: true });
      if (img.complete && img.naturalWidth > 0) entry.qrSlot.appendChild(img);
    } else {
      qr.img.src = url;
    }
    if (old) URL.revokeObjectURL(old);
  } catch (e) {
    if (qr.stopped || qr.gen !== generation) return;
    // 404/409: the QR went away between two polls (scanned or expired); the next session
    // poll updates the status. Anything else is worth showing.
    if (e.status !== 404 && e.status !== 409 && e.status !== 401) showError(e.message);
  }
  if (!qr.stopped && qr.gen === generation) qr.timer = setTimeout(() => refreshQr(entry, qr), QR_MS);
}

// ---- actions -----------------------------------------------------------------------

const ACTIONS = {
  restart: { method: 'POST', suffix: '/restart', done: 'restarting' },
  logout: { method: 'POST', suffix: '/logout', done: 'logging out' },
  delete: { method: 'DELETE', suffix: '', done: 'deleted' },
};

async function runAction(action, id, button) {
  const spec = ACTIONS[action];
  if (!spec) return;
  if (action === 'delete' &&
      !window.confirm(`Delete session "${id}"? Its browser is closed and its record removed.`)) {
    return;
  }
  const gen = generation;
  button.disabled = true;
  try {
    await api(spec.method, `${sessionPath(id)}${spec.suffix}`);
    if (gen !== generation) return;
    clearError();
    if (action === 'delete') removeRow(id);
    el.empty.hidden = rows.size > 0;
    poll();
  } catch (e) {
    if (gen === generation) showError(e.message);
  } finally {
    button.disabled = false;
  }
}

el.create.addEventListener('submit', async (event) => {
  event.preventDefault();
  const id = el.newId.value.trim();
  const email = el.newEmail.value.trim();
  if (!id) {
    showError('Enter a session id.');
    el.newId.focus();
    return;
  }
  const body = { id };
  if (email) body.owner_email = email;
  const gen = generation;
  el.createSubmit.disabled = true;
  try {
    const response = await api('POST', '/api/sessions', body);
    if (gen !== generation) return;
    clearError();
    el.newId.value = '';
    el.newEmail.value = '';
    let session = null;
    try {
      session = await response.json();
    } catch (_) {
      // No body: the next poll shows the session.
    }
    if (session && typeof session.id === 'string' && !rows.has(session.id)) {
      const entry = createRow(session.id);
      updateRow(entry, session);
      el.sessions.appendChild(entry.row);
      el.empty.hidden = true;
    }
    poll();
  } catch (e) {
    if (gen === generation) showError(e.message);
  } finally {
    el.createSubmit.disabled = false;
  }
});

// ---- start -------------------------------------------------------------------------

setInterval(() => {
  if (!apiKey) return;
  updateLive();
  // Relative times move on even when nothing else changes.
  for (const entry of rows.values()) {
    if (!entry.session) continue;
    setTime(entry.fields.lastSeen, entry.session.last_seen_at);
    setTime(entry.fields.lastBackup, entry.session.last_backup_at);
  }
}, 15000);

if (apiKey) signIn(apiKey);
else showLogin();
