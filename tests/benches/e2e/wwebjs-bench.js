// The whatsapp-web.js side of `cargo bench -p whatsapp-tests --bench e2e`: a minimal
// whatsapp-web.js gateway, N clients with LocalAuth in ONE Node process (what a gateway built
// on whatsapp-web.js runs), driven by the Rust bench over stdin/stdout.
//
// Run by the bench, not by hand. whatsapp-web.js 1.34.7 comes from
// whatsapp-emulator/compat/node_modules (NODE_PATH points there; no second npm install).
//
// Environment:
//   EMULATOR_ADDR  127.0.0.1:PORT of the emulator (HTTPS, plays web.whatsapp.com)
//   CHROMIUM       the Chromium executable (default /usr/bin/chromium)
//   DATA_PATH      LocalAuth's dataPath: each client's profile is DATA_PATH/session-<id>
//   BACKUP_PATH    where `zip` writes <id>.zip (RemoteAuth's archive of the profile)
//   RECOVER        "1" (default): relaunch a client whose browser died (see below)
//
// Commands (stdin, one JSON object per line):
//   {"cmd":"start","id":"s1"}                 new Client + initialize()
//   {"cmd":"start","id":"s1","restore":true}  unzip BACKUP_PATH/s1.zip into the profile
//                                             first (RemoteAuth's extractRemoteSession)
//   {"cmd":"reinit","id":"s1"}                destroy() the client, then start it again
//   {"cmd":"zip","id":"s1"}                   archive the profile as RemoteAuth does
//   {"cmd":"info"}                            pid of Node and of each client's browser
//   {"cmd":"stop"}                            destroy() every client, then exit 0
// End of stdin is a `stop`.
//
// Events (stdout, one JSON object per line, `t` = Date.now() in ms since the epoch):
//   {"event":"started","pid":..}  {"event":"qr","id":..,"qr":..}  {"event":"authenticated","id":..}
//   {"event":"ready","id":..}     {"event":"change_state","id":..,"state":..}
//   {"event":"disconnected","id":..,"reason":..}  {"event":"browser_disconnected","id":..}
//   {"event":"zipped","id":..,"bytes":..,"ms":..} {"event":"info","pid":..,"browsers":{id:pid}}
//   {"event":"error","id":..,"error":..}          {"event":"stopped"}
//
// Recovery: whatsapp-web.js does not notice that its browser died (no event, no relaunch).
// A gateway typically listens to puppeteer's `disconnected` on client.pupBrowser and then
// destroys the client and initializes a new one on the same LocalAuth profile; RECOVER=1
// does exactly that.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const { Client, LocalAuth } = require('whatsapp-web.js');
const archiver = require('archiver');
const unzipper = require('unzipper');

process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0'; // the emulator's self-signed certificate

const ADDR = required('EMULATOR_ADDR');
const DATA_PATH = required('DATA_PATH');
const BACKUP_PATH = required('BACKUP_PATH');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const RECOVER = (process.env.RECOVER || '1') === '1';
// RemoteAuth's requiredDirs, copied from the profile's Default directory.
const REQUIRED_DIRS = ['Default', 'IndexedDB', 'Local Storage'];

function required(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`wwebjs-bench: environment variable ${name} is not set`);
    process.exit(2);
  }
  return v;
}

function emit(event, fields) {
  process.stdout.write(JSON.stringify({ event, t: Date.now(), ...fields }) + '\n');
}

const clients = new Map(); // id -> Client
let stopping = false;

function profileDir(id) {
  return path.join(DATA_PATH, `session-${id}`);
}

function newClient(id) {
  const client = new Client({
    authStrategy: new LocalAuth({ clientId: id, dataPath: DATA_PATH }),
    webVersionCache: { type: 'none' },
    puppeteer: {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        `--host-resolver-rules=MAP web.whatsapp.com ${ADDR}`, '--ignore-certificate-errors',
      ],
    },
  });
  client.on('qr', (qr) => emit('qr', { id, qr }));
  client.on('authenticated', () => emit('authenticated', { id }));
  client.on('auth_failure', (m) => emit('error', { id, error: `auth_failure: ${m}` }));
  client.on('ready', () => {
    emit('ready', { id });
    if (client.pupBrowser) {
      client.pupBrowser.once('disconnected', () => onBrowserGone(id, client));
    }
  });
  client.on('change_state', (state) => emit('change_state', { id, state }));
  client.on('disconnected', (reason) => emit('disconnected', { id, reason: String(reason) }));
  return client;
}

function start(id) {
  const client = newClient(id);
  clients.set(id, client);
  client.initialize().catch((e) => emit('error', { id, error: `initialize: ${e && e.message || e}` }));
}

// The gateway's recovery: the browser is gone, so destroy the client and start it again.
async function onBrowserGone(id, client) {
  if (stopping || clients.get(id) !== client || client.benchGone) return;
  client.benchGone = true;
  emit('browser_disconnected', { id });
  if (!RECOVER) return;
  await client.destroy().catch(() => {});
  if (stopping) return;
  start(id);
}

async function exists(p) {
  try { await fs.promises.access(p); return true; } catch { return false; }
}

// RemoteAuth.compressSession: copy the required directories of Default to a staging
// directory and zip that.
async function zip(id) {
  const t0 = process.hrtime.bigint();
  const stage = path.join(BACKUP_PATH, `stage-${id}`);
  await fs.promises.rm(stage, { recursive: true, force: true });
  const stageDefault = path.join(stage, 'Default');
  await fs.promises.mkdir(stageDefault, { recursive: true });
  const from = path.join(profileDir(id), 'Default');
  for (const d of REQUIRED_DIRS) {
    const src = path.join(from, d);
    if (await exists(src)) {
      await fs.promises.cp(src, path.join(stageDefault, d), { recursive: true, force: true, errorOnExist: false });
    }
  }
  const out = path.join(BACKUP_PATH, `${id}.zip`);
  await new Promise((resolve, reject) => {
    const archive = archiver('zip');
    const stream = fs.createWriteStream(out);
    stream.once('close', resolve);
    stream.once('error', reject);
    archive.once('error', reject);
    archive.pipe(stream);
    archive.directory(stage, false);
    archive.finalize();
  });
  await fs.promises.rm(stage, { recursive: true, force: true });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const { size } = await fs.promises.stat(out);
  emit('zipped', { id, bytes: size, ms });
}

// RemoteAuth.extractRemoteSession + unCompressSession: a fresh profile directory holding
// the archive's contents.
async function unzip(id) {
  const dir = profileDir(id);
  await fs.promises.rm(dir, { recursive: true, force: true });
  await fs.promises.mkdir(dir, { recursive: true });
  const archive = path.join(BACKUP_PATH, `${id}.zip`);
  await new Promise((resolve, reject) => {
    fs.createReadStream(archive)
      .pipe(unzipper.Extract({ path: dir, concurrency: 10 }))
      .on('error', reject)
      .on('finish', resolve);
  });
}

function info() {
  const browsers = {};
  for (const [id, c] of clients) {
    const proc = c.pupBrowser && c.pupBrowser.process();
    browsers[id] = proc ? proc.pid : null;
  }
  emit('info', { pid: process.pid, browsers });
}

async function stop() {
  if (stopping) return;
  stopping = true;
  await Promise.allSettled([...clients.values()].map((c) => c.destroy()));
  emit('stopped', {});
  process.exit(0);
}

async function handle(line) {
  if (!line.trim()) return;
  let msg;
  try { msg = JSON.parse(line); } catch (e) { emit('error', { error: `bad command ${line}: ${e.message}` }); return; }
  try {
    switch (msg.cmd) {
      case 'start':
        if (msg.restore) await unzip(msg.id);
        start(msg.id);
        break;
      case 'reinit': {
        const old = clients.get(msg.id);
        if (old) { old.benchGone = true; await old.destroy().catch(() => {}); }
        start(msg.id);
        break;
      }
      case 'zip': await zip(msg.id); break;
      case 'info': info(); break;
      case 'stop': await stop(); break;
      default: emit('error', { error: `unknown command ${msg.cmd}` });
    }
  } catch (e) {
    emit('error', { id: msg.id, error: `${msg.cmd}: ${e && e.stack || e}` });
  }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => { handle(line); });
rl.on('close', () => { stop(); });
process.on('unhandledRejection', (e) => emit('error', { error: `unhandled: ${e && e.stack || e}` }));
emit('started', { pid: process.pid });
