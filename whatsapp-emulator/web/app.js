// The emulator's WhatsApp Web application: the modules of the real site's surface, the
// connection state machine and the credential storage. It talks to its server side over a
// WebSocket at `/ws/chat` on its own origin, so it works under any host name.
(function () {
  'use strict';

  var rt = window.require('WAWebBackboneRuntime');
  var Model = rt.Model;
  var Collection = rt.Collection;
  var EventEmitter = rt.EventEmitter;
  var define = window.__d;

  var configNode = document.getElementById('wa-emu-config');
  var CONFIG = JSON.parse((configNode && configNode.textContent) || '{}');
  var RETRY_MS = CONFIG.retry_ms && CONFIG.retry_ms.length ? CONFIG.retry_ms : [1000, 2000, 5000, 10000];
  var REQUEST_TIMEOUT_MS = CONFIG.request_timeout_ms || 30000;

  // ---- base64 -------------------------------------------------------------------------
  function toBytes(data) {
    if (data instanceof Uint8Array) return data;
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (typeof data === 'string') return new TextEncoder().encode(data);
    throw new TypeError('encodeB64: expected bytes');
  }
  function encodeB64(data) {
    var bytes = toBytes(data);
    var s = '';
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s);
  }
  function decodeB64(text) {
    var s = atob(text);
    var out = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out.buffer;
  }
  function randomBytes(n) {
    return crypto.getRandomValues(new Uint8Array(n));
  }
  function randomHex(n) {
    return Array.prototype.map.call(randomBytes(n), function (b) {
      return ('0' + b.toString(16)).slice(-2);
    }).join('').toUpperCase();
  }

  // ---- IndexedDB storage (databases named like the real ones) -------------------------
  var CREDS_DB = 'wawc';
  var KEYS_DB = 'wawc_db_enc';
  var MARKER = 'last-wid-md';

  function idbOpen(name, store) {
    return new Promise(function (resolve, reject) {
      var req = indexedDB.open(name, 1);
      req.onupgradeneeded = function () {
        if (!req.result.objectStoreNames.contains(store)) req.result.createObjectStore(store);
      };
      req.onsuccess = function () { resolve(req.result); };
      req.onerror = function () { reject(req.error); };
    });
  }
  function idbRequest(name, store, mode, action) {
    return idbOpen(name, store).then(function (db) {
      return new Promise(function (resolve, reject) {
        var tx = db.transaction(store, mode);
        var req = action(tx.objectStore(store));
        var result;
        req.onsuccess = function () { result = req.result; };
        tx.oncomplete = function () { db.close(); resolve(result); };
        tx.onerror = function () { db.close(); reject(tx.error); };
        tx.onabort = function () { db.close(); reject(tx.error); };
      });
    });
  }
  function idbGet(name, store, key) {
    return idbRequest(name, store, 'readonly', function (s) { return s.get(key); });
  }
  function idbPut(name, store, key, value) {
    return idbRequest(name, store, 'readwrite', function (s) { return s.put(value, key); });
  }
  function idbDelete(name, store, key) {
    return idbRequest(name, store, 'readwrite', function (s) { return s.delete(key); });
  }

  // Keys are made once per browser profile and kept across logouts.
  var keysPromise = null;
  function loadKeys() {
    if (!keysPromise) {
      keysPromise = idbGet(KEYS_DB, 'keys', 'device-keys').then(function (keys) {
        if (keys) return keys;
        keys = {
          staticKeyPair: { pubKey: randomBytes(32).buffer, privKey: randomBytes(32).buffer },
          identityKeyPair: { pubKey: randomBytes(32).buffer, privKey: randomBytes(32).buffer },
          advSecretKey: encodeB64(randomBytes(32)),
          registrationId: 1 + (randomBytes(2)[0] << 6) + randomBytes(1)[0]
        };
        return idbPut(KEYS_DB, 'keys', 'device-keys', keys).then(function () { return keys; });
      });
    }
    return keysPromise;
  }
  var cachedKeys = null;

  function loadCreds() {
    return idbGet(CREDS_DB, 'user', 'creds');
  }
  function storeCreds(creds) {
    return idbPut(CREDS_DB, 'user', 'creds', creds).then(function () {
      localStorage.setItem(MARKER, JSON.stringify(creds.phone + ':' + creds.device_number + '@c.us'));
    });
  }
  function clearCreds() {
    localStorage.removeItem(MARKER);
    return idbDelete(CREDS_DB, 'user', 'creds');
  }

  // ---- WIDs and message keys ------------------------------------------------------------
  function Wid(text) {
    text = String(text);
    var at = text.indexOf('@');
    var user = at >= 0 ? text.slice(0, at) : text;
    var server = at >= 0 ? text.slice(at + 1) : 'c.us';
    var colon = user.indexOf(':');
    if (colon >= 0) {
      this.device = Number(user.slice(colon + 1));
      user = user.slice(0, colon);
    }
    this.user = user;
    this.server = server;
    this._serialized = user + '@' + server;
  }
  Wid.prototype.toString = function () { return this._serialized; };
  Wid.prototype.toJid = function () { return this._serialized; };
  Wid.prototype.equals = function (other) { return other != null && String(other._serialized || other) === this._serialized; };
  Wid.prototype.isUser = function () { return this.server === 'c.us' || this.server === 'lid'; };
  Wid.prototype.isGroup = function () { return this.server === 'g.us'; };
  Wid.prototype.isLid = function () { return this.server === 'lid'; };
  Wid.prototype.isBroadcast = function () { return this.server === 'broadcast'; };
  Wid.prototype.isStatus = function () { return this.user === 'status' && this.server === 'broadcast'; };
  Wid.prototype.isNewsletter = function () { return this.server === 'newsletter'; };
  Wid.prototype.toJSON = function () { return this._serialized; };

  function createWid(text) {
    if (text instanceof Wid) return text;
    if (text && typeof text === 'object' && text._serialized) return new Wid(text._serialized);
    return new Wid(text);
  }

  function MsgKey(opts) {
    opts = opts || {};
    this.fromMe = opts.fromMe != null ? !!opts.fromMe : opts.selfDir === 'out';
    var remote = opts.remote != null ? opts.remote : (this.fromMe ? opts.to : opts.from);
    this.remote = createWid(remote);
    this.id = String(opts.id);
    if (opts.participant) this.participant = createWid(opts.participant);
    this._serialized = this.fromMe + '_' + this.remote._serialized + '_' + this.id +
      (this.participant ? '_' + this.participant._serialized : '');
  }
  MsgKey.prototype.toString = function () { return this._serialized; };
  MsgKey.prototype.equals = function (other) { return other != null && String(other._serialized || other) === this._serialized; };
  MsgKey.newId = function () { return Promise.resolve('3EB0' + randomHex(9)); };
  MsgKey.newId_DEPRECATED = function () { return '3EB0' + randomHex(9); };
  MsgKey.fromString = function (text) {
    var parts = String(text).split('_');
    return new MsgKey({ fromMe: parts[0] === 'true', remote: parts[1], id: parts[2], participant: parts[3] });
  };
  MsgKey.from = function (v) { return v instanceof MsgKey ? v : MsgKey.fromString(v._serialized || v); };

  // ---- models ---------------------------------------------------------------------------
  var Socket = new Model({ state: 'OPENING', hasSynced: false, stream: 'DISCONNECTED' });
  var Conn = new Model({ ref: null, platform: 'web', pushname: undefined, wid: undefined, phone: undefined, connected: false });
  Conn.serialize = function () {
    var a = this.attributes;
    return {
      ref: a.ref,
      refTTL: a.refTTL,
      wid: a.wid,
      pushname: a.pushname,
      platform: a.platform,
      phone: a.phone,
      connected: a.connected,
      isResponse: 'false',
      battery: a.battery,
      plugged: a.plugged,
      locales: 'en-US',
      is24h: true
    };
  };
  var Stream = new Model({ available: false, mode: 'QR', info: undefined, displayInfo: 'OPENING' });
  var Cmd = new EventEmitter();
  Cmd.refreshQR = function () { Socket.reconnect(); };

  var MsgModel = Model.extend({});
  var Msg = new (Collection.extend({ model: MsgModel }))();
  Msg.modelClass = MsgModel;
  Msg.getMessagesById = function (ids) {
    return Promise.resolve({ messages: ids.map(function (id) { return Msg.get(id); }).filter(Boolean) });
  };
  var ChatModel = Model.extend({
    initialize: function () {
      this.set({ msgs: new Collection() }, { silent: true });
    }
  });
  var Chat = new (Collection.extend({ model: ChatModel }))();
  var Contact = new Collection();

  // ---- UI -------------------------------------------------------------------------------
  var ui = {};
  function render() {
    if (!ui.state) return;
    var state = Socket.state;
    ui.state.textContent = state + (Socket.hasSynced ? ' (synced)' : '');
    var showQr = state === 'UNPAIRED' && Conn.ref;
    ui.qr.hidden = !showQr;
    ui.idle.hidden = state !== 'UNPAIRED_IDLE';
    ui.conflict.hidden = state !== 'CONFLICT';
    ui.me.textContent = state === 'CONNECTED' && Conn.wid ? 'Linked as ' + Conn.wid._serialized : '';
    if (showQr) {
      qrPayload().then(function (payload) {
        if (Conn.ref && payload.indexOf(Conn.ref + ',') === 0) {
          ui.qr.setAttribute('data-ref', payload);
          ui.qrText.textContent = payload;
        }
      });
    } else {
      ui.qr.removeAttribute('data-ref');
    }
  }
  function qrPayload() {
    return loadKeys().then(function (keys) {
      return [Conn.ref, encodeB64(keys.staticKeyPair.pubKey), encodeB64(keys.identityKeyPair.pubKey),
        keys.advSecretKey, DEVICE_PLATFORM].join(',');
    });
  }
  var DEVICE_PLATFORM = CONFIG.device_platform || 'WEB';

  // ---- the connection -------------------------------------------------------------------
  var ws = null;
  var retryTimer = null;
  var attempt = 0;
  var takeoverNext = false;
  var pendingOut = [];
  var pendingRequests = Object.create(null);
  var pendingSends = Object.create(null);
  var requestSeq = 0;
  var linking = null;

  function setState(state) {
    Socket.set('state', state);
    Stream.set('displayInfo', state);
  }

  function wsUrl() {
    return (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/ws/chat';
  }

  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN && ws._ready) {
      ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }
  function sendWhenOnline(msg) {
    if (!send(msg)) pendingOut.push(msg);
  }
  function flushPending() {
    var out = pendingOut;
    pendingOut = [];
    out.forEach(function (m) { sendWhenOnline(m); });
  }

  function request(msg) {
    var qid = 'q' + (++requestSeq);
    msg.qid = qid;
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () {
        delete pendingRequests[qid];
        reject(new Error('request ' + msg.type + ' timed out'));
      }, REQUEST_TIMEOUT_MS);
      pendingRequests[qid] = function (reply) {
        clearTimeout(timer);
        delete pendingRequests[qid];
        if (reply.error) reject(new Error(reply.error));
        else resolve(reply);
      };
      sendWhenOnline(msg);
    });
  }

  function closeSocket() {
    if (ws) {
      var old = ws;
      ws = null;
      old._intentional = true;
      try { old.close(); } catch (e) { /* already closed */ }
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    closeSocket();
    if (Socket.state !== 'PAIRING') setState('OPENING');
    var socket = new WebSocket(wsUrl());
    ws = socket;
    socket.onopen = function () {
      Promise.all([loadKeys(), loadCreds()]).then(function (r) {
        if (ws !== socket) return;
        var keys = r[0];
        var creds = r[1];
        socket.send(JSON.stringify({
          type: 'hello',
          version: CONFIG.version,
          static_key: encodeB64(keys.staticKeyPair.pubKey),
          identity_key: encodeB64(keys.identityKeyPair.pubKey),
          adv_secret: keys.advSecretKey,
          creds: creds ? { device: creds.device, secret: creds.secret } : null,
          takeover: takeoverNext,
          user_agent: navigator.userAgent
        }));
        takeoverNext = false;
      });
    };
    socket.onmessage = function (ev) {
      if (ws !== socket) return;
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      handle(socket, msg);
    };
    socket.onclose = function () {
      if (socket._intentional || ws !== socket) return;
      ws = null;
      lostConnection();
    };
  }

  function lostConnection() {
    var state = Socket.state;
    if (state === 'CONFLICT' || state === 'DEPRECATED_VERSION' || state === 'UNPAIRED_IDLE') return;
    Conn.set('connected', false);
    Stream.set('available', false);
    setState('TIMEOUT');
    var delay = RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)];
    attempt++;
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, delay);
  }

  function handle(socket, msg) {
    switch (msg.type) {
      case 'ready':
        socket._ready = true;
        break;
      case 'ref':
        attempt = 0;
        socket._ready = true;
        Conn.set({ ref: msg.ref, refTTL: msg.ttl_ms });
        if (Socket.state !== 'UNPAIRED') setState('UNPAIRED');
        render();
        break;
      case 'idle':
        closeSocket();
        setState('UNPAIRED_IDLE');
        break;
      case 'paired':
        setState('PAIRING');
        storeCreds({ device: msg.device, secret: msg.secret, phone: msg.phone, device_number: msg.device_number })
          .then(function () {
            socket.send(JSON.stringify({ type: 'login', creds: { device: msg.device, secret: msg.secret } }));
          });
        break;
      case 'connected':
        attempt = 0;
        socket._ready = true;
        onConnected(msg);
        break;
      case 'offline_progress':
        offlineProgress = msg.progress;
        Cmd.trigger('offline_progress_update_from_bridge', msg.progress);
        Cmd.trigger('offline_progress_update', msg.progress);
        break;
      case 'synced':
        offlineProgress = 100;
        if (!Socket.hasSynced) Socket.set('hasSynced', true);
        Stream.set('mode', 'MAIN');
        Cmd.trigger('sync_completed');
        break;
      case 'refused':
      case 'logout':
        logoutFlow();
        break;
      case 'conflict':
        closeSocket();
        Conn.set('connected', false);
        setState('CONFLICT');
        break;
      case 'deprecated':
        closeSocket();
        setState('DEPRECATED_VERSION');
        break;
      case 'ack':
        onAck(msg);
        break;
      case 'reply':
        if (pendingRequests[msg.qid]) pendingRequests[msg.qid](msg);
        break;
      case 'msg':
        onIncoming(msg);
        break;
      default:
        break;
    }
  }

  function onConnected(msg) {
    var wid = createWid(msg.phone + '@c.us');
    Conn.set({ wid: wid, pushname: msg.pushname, platform: msg.platform || 'android', phone: msg.phone_info || {}, connected: true, ref: null });
    meUser = wid;
    Stream.set({ available: true, info: 'NORMAL' });
    setState('CONNECTED');
    flushPending();
    render();
  }

  function logoutFlow() {
    if (logoutFlow.running) return;
    logoutFlow.running = true;
    closeSocket();
    Cmd.trigger('logout');
    Cmd.trigger('logout_from_bridge');
    clearCreds().then(function () {
      // The real site reloads itself into a clean page after a logout.
      location.replace(location.pathname + '?post_logout=1');
    }, function () {
      location.replace(location.pathname + '?post_logout=1');
    });
  }

  // ---- messages -------------------------------------------------------------------------
  var meUser = null;
  var offlineProgress = 0;

  function findChat(wid) {
    wid = createWid(wid);
    var chat = Chat.get(wid);
    var created = false;
    if (!chat) {
      chat = Chat.add({
        id: wid, name: undefined, formattedTitle: '+' + wid.user, t: Math.floor(Date.now() / 1000),
        unreadCount: 0, archive: false, pin: 0, isReadOnly: false, mute: { expiration: 0 }
      });
      created = true;
    }
    return { chat: chat, created: created };
  }

  function addAndSendMsgToChat(chat, attrs) {
    var msg = Msg.add(Object.assign({}, attrs));
    chat.msgs.add(msg);
    chat.set('t', attrs.t || Math.floor(Date.now() / 1000));
    var added = Promise.resolve(msg);
    var sent = new Promise(function (resolve) {
      pendingSends[msg.id._serialized] = resolve;
      sendWhenOnline({
        type: 'send',
        id: msg.id.id,
        key: msg.id._serialized,
        to: createWid(attrs.to || chat.id)._serialized,
        body: attrs.body,
        msg_type: attrs.type || 'chat',
        t: attrs.t
      });
    });
    return [added, sent];
  }

  function onAck(m) {
    var msg = Msg.get(m.id);
    if (msg && (msg.ack || 0) < m.ack) msg.set('ack', m.ack);
    if (m.ack >= 1 && pendingSends[m.id]) {
      pendingSends[m.id]({ messageSendResult: 'OK', t: m.t });
      delete pendingSends[m.id];
    }
  }

  function onIncoming(m) {
    var from = createWid(m.from);
    var chat = findChat(from).chat;
    var key = new MsgKey({ fromMe: false, remote: from, id: m.id });
    var msg = Msg.add({
      id: key, ack: 1, body: m.body, from: from, to: meUser || createWid(m.to), local: false,
      self: 'in', t: m.t, isNewMsg: true, type: 'chat', notifyName: m.notify_name
    });
    chat.msgs.add(msg);
    chat.set({ t: m.t, unreadCount: (chat.unreadCount || 0) + 1 });
  }

  // ---- activity ---------------------------------------------------------------------------
  function reportActivity(kind, key, trusted) {
    sendWhenOnline({ type: 'activity', kind: kind, key: key, trusted: !!trusted });
  }
  document.addEventListener('mousemove', function (e) { reportActivity('mousemove', null, e.isTrusted); }, true);
  document.addEventListener('keydown', function (e) { reportActivity('keydown', e.key, e.isTrusted); }, true);
  if (navigator.wakeLock && typeof navigator.wakeLock.request === 'function') {
    var originalRequest = navigator.wakeLock.request.bind(navigator.wakeLock);
    navigator.wakeLock.request = function (type) {
      reportActivity('wakelock', type || 'screen', true);
      return originalRequest(type);
    };
  }
  document.addEventListener('visibilitychange', function () {
    reportActivity('visibility', document.visibilityState, true);
  });

  // ---- the modules of the surface ---------------------------------------------------------
  Socket.reconnect = function () { attempt = 0; connect(); };
  Socket.takeover = function () { takeoverNext = true; attempt = 0; connect(); };
  Socket.logout = function () {
    if (!send({ type: 'logout' })) logoutFlow();
  };
  Socket.poke = function () { if (Socket.state !== 'CONNECTED') Socket.reconnect(); };
  Stream.markAvailable = function () { sendWhenOnline({ type: 'presence', available: true, implicit: true }); };
  Stream.markUnavailable = function () { sendWhenOnline({ type: 'presence', available: false, implicit: true }); };

  define('WAWebSocketModel', function () {
    return {
      Socket: Socket,
      SOCKET_STATE: {
        OPENING: 'OPENING', PAIRING: 'PAIRING', UNPAIRED: 'UNPAIRED', UNPAIRED_IDLE: 'UNPAIRED_IDLE',
        CONNECTED: 'CONNECTED', TIMEOUT: 'TIMEOUT', CONFLICT: 'CONFLICT', UNLAUNCHED: 'UNLAUNCHED',
        PROXYBLOCK: 'PROXYBLOCK', TOS_BLOCK: 'TOS_BLOCK', SMB_TOS_BLOCK: 'SMB_TOS_BLOCK',
        DEPRECATED_VERSION: 'DEPRECATED_VERSION'
      }
    };
  });
  define('WAWebConnModel', function () { return { Conn: Conn }; });
  define('WAWebCmd', function () { return { Cmd: Cmd }; });
  define('WABase64', function () {
    return { encodeB64: encodeB64, decodeB64: decodeB64, encodeB64UrlSafe: function (d) { return encodeB64(d).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''); } };
  });
  define('WAWebUserPrefsInfoStore', function () {
    return {
      waNoiseInfo: {
        get: function () { return loadKeys().then(function (k) { return { staticKeyPair: k.staticKeyPair }; }); }
      }
    };
  });
  define('WAWebSignalStoreApi', function () {
    return {
      waSignalStore: {
        getRegistrationInfo: function () {
          return loadKeys().then(function (k) {
            return { identityKeyPair: k.identityKeyPair, registrationId: k.registrationId };
          });
        }
      }
    };
  });
  define('WAWebUserPrefsMultiDevice', function () {
    return {
      getADVSecretKey: function () { return cachedKeys ? cachedKeys.advSecretKey : undefined; }
    };
  });
  define('WAWebCompanionRegClientUtils', function () {
    return { DEVICE_PLATFORM: DEVICE_PLATFORM };
  });
  define('WAWebAltDeviceLinkingApi', function () {
    return {
      setPairingType: function (type) { linking = linking || {}; linking.type = type; },
      initializeAltDeviceLinking: function () {
        linking = linking || {};
        linking.initialized = true;
        return Promise.resolve();
      },
      startAltLinkingFlow: function (phone, showNotification) {
        return request({ type: 'pair_code', phone: String(phone).replace(/\D/g, ''), show_notification: !!showNotification })
          .then(function (reply) {
            Conn.set('pairingCode', reply.code);
            return reply.code;
          });
      }
    };
  });
  define('WAWebUserPrefsMeUser', function () {
    return {
      getMaybeMePnUser: function () { return meUser || undefined; },
      getMaybeMeLidUser: function () { return meUser ? createWid(meUser.user + '@lid') : undefined; },
      getMaybeMeUser: function () { return meUser || undefined; },
      getMePNandLIDWids: function () { return meUser ? [meUser, createWid(meUser.user + '@lid')] : []; },
      getMeUser: function () {
        if (!meUser) throw new Error('getMeUser: not logged in');
        return meUser;
      }
    };
  });
  define('WAWebPresenceChatAction', function () {
    return {
      sendPresenceAvailable: function () { sendWhenOnline({ type: 'presence', available: true }); return Promise.resolve(); },
      sendPresenceUnavailable: function () { sendWhenOnline({ type: 'presence', available: false }); return Promise.resolve(); }
    };
  });
  define('WAWebQueryExistsJob', function () {
    function queryWidExists(wid) {
      wid = createWid(wid);
      return request({ type: 'exists', jid: wid._serialized }).then(function (reply) {
        return reply.exists ? { wid: createWid(reply.jid || wid._serialized), biz: false } : null;
      });
    }
    return {
      queryWidExists: queryWidExists,
      queryPhoneExists: function (phone) { return queryWidExists(String(phone).replace(/\D/g, '') + '@c.us'); }
    };
  });
  define('WAWebWidFactory', function () {
    return {
      createWid: createWid,
      createUserWid: function (user, server) { return createWid(String(user) + '@' + (server || 'c.us')); },
      createWidFromWidLike: createWid,
      toUserWid: function (w) { return createWid(createWid(w).user + '@c.us'); },
      isWidlike: function (w) { return w instanceof Wid || (typeof w === 'string' && w.indexOf('@') > 0); }
    };
  });
  define('WAWebWid', function () { return Wid; });
  define('WAWebCollections', function () {
    return { Chat: Chat, Msg: Msg, Contact: Contact };
  });
  define('WAWebFindChatAction', function () {
    return {
      findOrCreateLatestChat: function (wid) { return Promise.resolve(findChat(wid)); },
      findChat: function (wid) { return Promise.resolve(findChat(wid).chat); }
    };
  });
  define('WAWebMsgKey', function () { return MsgKey; });
  define('WAWebGetEphemeralFieldsMsgActionsUtils', function () {
    return {
      getEphemeralFields: function () {
        return { ephemeralDuration: 0, ephemeralSettingTimestamp: 0, disappearingModeInitiator: 'chat' };
      }
    };
  });
  define('WAWebSendMsgChatAction', function () {
    return { addAndSendMsgToChat: addAndSendMsgToChat };
  });
  define('WAWebUpdateUnreadChatAction', function () {
    return {
      sendSeen: function (arg) {
        var chat = arg && arg.chat ? arg.chat : arg;
        if (chat && chat.set) chat.set('unreadCount', 0);
        if (chat && chat.id) sendWhenOnline({ type: 'seen', jid: createWid(chat.id)._serialized });
        return Promise.resolve();
      },
      markUnread: function (chat) { chat.set('unreadCount', -1); return Promise.resolve(); }
    };
  });
  define('WAWebStreamModel', function () {
    return { Stream: Stream, StreamMode: { QR: 'QR', MAIN: 'MAIN', SYNCING: 'SYNCING' } };
  });
  define('WAWebOfflineHandler', function () {
    return {
      OfflineMessageHandler: {
        getOfflineDeliveryProgress: function () { return offlineProgress; },
        isResumeFromRestartComplete: function () { return Socket.hasSynced; }
      }
    };
  });

  // ---- modules the most used client (whatsapp-web.js) also touches ---------------------------
  define('WAWebAdvSignatureApi', function () {
    return {
      getADVSecretKey: function () { return cachedKeys ? cachedKeys.advSecretKey : undefined; }
    };
  });
  define('WAWebMiscBrowserUtils', function () {
    return {
      info: function () {
        var ua = navigator.userAgent;
        var m = /Chrome\/([\d.]+)/.exec(ua);
        return { name: 'Chrome', version: m ? m[1] : '', os: /Mac OS/.test(ua) ? 'Mac OS' : /Windows/.test(ua) ? 'Windows' : 'Linux', ua: ua };
      }
    };
  });
  define('WAWebSyncGatingUtils', function () {
    return { isPlaceholderMessageResendEnabled: function () { return false; } };
  });
  define('WAWebCallCollection', function () {
    var calls = new Collection();
    calls._calls = new Map();
    return calls;
  });
  define('WAWebChatGetters', function () {
    function id(chat) { return createWid(chat.id); }
    return {
      getIsNewsletter: function (chat) { return id(chat).isNewsletter(); },
      getIsBroadcast: function (chat) { return id(chat).isBroadcast(); },
      getIsGroup: function (chat) { return id(chat).isGroup(); },
      getIsUser: function (chat) { return id(chat).isUser(); },
      getKind: function (chat) { return id(chat).isGroup() ? 'group' : 'chat'; }
    };
  });
  define('WALinkify', function () {
    var URL_RE = /\bhttps?:\/\/[^\s<>"']+/gi;
    function findLinks(text) {
      if (typeof text !== 'string') return [];
      var out = [];
      var m;
      URL_RE.lastIndex = 0;
      while ((m = URL_RE.exec(text))) out.push({ href: m[0], url: m[0], suspiciousCharacters: new Set() });
      return out;
    }
    return { findLinks: findLinks, findLink: function (text) { return findLinks(text)[0] || null; } };
  });
  define('WAWebContactGetters', function () {
    function wid(c) { return createWid(c.id); }
    return {
      getIsMe: function (c) { return !!meUser && wid(c).user === meUser.user; },
      getIsUser: function (c) { return wid(c).isUser(); },
      getIsGroup: function (c) { return wid(c).isGroup(); },
      getIsWAContact: function () { return true; },
      getUserid: function (c) { return wid(c).user; },
      getVerifiedName: function () { return undefined; },
      getVerifiedLevel: function () { return undefined; },
      getStatusMute: function () { return false; },
      getName: function (c) { return c.name; },
      getShortName: function (c) { return c.shortName; },
      getPushname: function (c) { return c.pushname; },
      getIsEnterprise: function () { return false; }
    };
  });
  define('WAWebFrontendContactGetters', function () {
    return { getIsMyContact: function (c) { return !!(c && c.isAddressBookContact); } };
  });
  define('WAWebApiContact', function () {
    return {
      getAlternateUserWid: function () { return null; },
      getCurrentLid: function (w) { return createWid(createWid(w).user + '@lid'); },
      getPhoneNumber: function (w) { return createWid(createWid(w).user + '@c.us'); }
    };
  });

  // ---- start ------------------------------------------------------------------------------
  function mountUi() {
    ui.state = document.getElementById('state');
    ui.qr = document.getElementById('qr');
    ui.qrText = document.getElementById('qr-text');
    ui.idle = document.getElementById('idle');
    ui.conflict = document.getElementById('conflict');
    ui.me = document.getElementById('me');
    document.getElementById('reload-qr').addEventListener('click', function () { Socket.reconnect(); });
    document.getElementById('use-here').addEventListener('click', function () { Socket.takeover(); });
    Socket.on('change:state change:hasSynced', render);
    Conn.on('change:ref', render);
    render();
  }

  window.Debug = window.Debug || {};
  loadKeys().then(function (keys) {
    cachedKeys = keys;
    window.Debug.VERSION = CONFIG.version;
    mountUi();
    connect();
  }, function (err) {
    document.body.textContent = 'Storage unavailable: ' + err;
  });
})();
