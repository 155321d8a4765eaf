// Runs whatsapp-web.js (the most used client of the real site) against the emulator:
// it must emit a QR, reach `ready` after a scan through the control API, and send a text.
//
//   cargo run -p whatsapp-emulator -- --listen 127.0.0.1:4010 --tls &
//   (cd whatsapp-emulator/compat && PUPPETEER_SKIP_DOWNLOAD=1 npm ci)
//   EMULATOR_ADDR=127.0.0.1:4010 node whatsapp-emulator/compat/wwebjs-check.js
//
// Prints one JSON line with timings and exits 0 on success, 1 on failure (90 s budget).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { Client, LocalAuth } = require('whatsapp-web.js');

process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0'; // the emulator's self-signed certificate

const ADDR = process.env.EMULATOR_ADDR || '127.0.0.1:4010';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const BASE = `https://${ADDR}`;
const PHONE = '34600000000';
const FRIEND = '34600000001';
const BUDGET_MS = Number(process.env.BUDGET_MS || 90000);

async function control(method, p, body) {
  const res = await fetch(`${BASE}/_emulator/${p}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} /_emulator/${p}: ${res.status} ${await res.text()}`);
  return res.status === 204 ? null : res.json();
}

async function main() {
  const dataPath = fs.mkdtempSync(path.join(os.tmpdir(), 'wwebjs-compat-'));
  const t0 = Date.now();
  const marks = {};
  const mark = (name) => { marks[name] = Date.now() - t0; };
  const client = new Client({
    authStrategy: new LocalAuth({ dataPath }),
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

  const done = new Promise((resolve, reject) => {
    let scanned = false;
    client.on('qr', async (qr) => {
      if (!marks.qr) mark('qr');
      const fields = qr.split(',');
      if (fields.length !== 5) return reject(new Error(`QR payload has ${fields.length} fields: ${qr}`));
      if (scanned) return;
      scanned = true;
      try {
        await control('POST', 'scan', { ref: fields[0], phone: PHONE });
        mark('scanned');
      } catch (e) { reject(e); }
    });
    client.on('authenticated', () => mark('authenticated'));
    client.on('auth_failure', (m) => reject(new Error(`auth_failure: ${m}`)));
    client.on('ready', async () => {
      mark('ready');
      try {
        await control('POST', 'accounts', { phone: FRIEND });
        const acked = new Promise((res) => client.on('message_ack', (m, ack) => { if (ack >= 2) res(ack); }));
        const msg = await client.sendMessage(`${FRIEND}@c.us`, 'Connection check');
        mark('sent');
        await acked;
        mark('delivered');
        const sent = await control('GET', 'messages');
        const found = sent.find((m) => m.body === 'Connection check' && m.to === FRIEND && m.from === PHONE);
        if (!found) throw new Error(`the emulator did not record the text: ${JSON.stringify(sent)}`);
        resolve({ id: msg.id._serialized, info: { pushname: client.info.pushname, wid: client.info.wid._serialized || client.info.wid } });
      } catch (e) { reject(e); }
    });
  });

  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`no success within ${BUDGET_MS} ms; reached ${JSON.stringify(marks)}`)), BUDGET_MS));
  client.initialize().catch((e) => { console.error('initialize failed:', e); });
  try {
    const result = await Promise.race([done, timeout]);
    console.log(JSON.stringify({ ok: true, ms: marks, ...result }));
  } finally {
    await client.destroy().catch(() => {});
    fs.rmSync(dataPath, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => { console.error(JSON.stringify({ ok: false, error: String(e && e.stack || e) })); process.exit(1); });
