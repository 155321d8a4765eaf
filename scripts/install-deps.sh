#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian machine of this kind:
# Chromium, and moto's S3 server for the S3 backup tests. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
fc-list 2>/dev/null | grep -qi liberation || need_apt+=(fonts-liberation)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
command -v chromium >/dev/null 2>&1 || { echo "FATAL: chromium could not be installed" >&2; exit 1; }

if ! command -v moto_server >/dev/null 2>&1; then
    echo "installing moto[server] with pip (S3-compatible test server)"
    python3 -m pip install --quiet 'moto[server]==5.*'
fi
command -v moto_server >/dev/null 2>&1 || { echo "FATAL: moto_server could not be installed" >&2; exit 1; }

if ! command -v st >/dev/null 2>&1 || ! st --version 2>/dev/null | grep -q '4\.32\.5'; then
    echo "installing schemathesis with pip (the OpenAPI fuzzer: scripts/openapi-fuzz.sh)"
    python3 -m pip install --quiet 'schemathesis==4.32.5'
fi
command -v st >/dev/null 2>&1 || { echo "FATAL: schemathesis could not be installed" >&2; exit 1; }

# whatsapp-web.js 1.34.7, the reference client the emulator is checked against (never
# let puppeteer download a browser: it runs on the Chromium installed above).
command -v node >/dev/null 2>&1 || { echo "FATAL: node is required for the whatsapp-web.js compatibility test" >&2; exit 1; }
if [ ! -d whatsapp-emulator/compat/node_modules/whatsapp-web.js ]; then
    echo "installing whatsapp-web.js with npm ci"
    (cd whatsapp-emulator/compat && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
# socket.io-client v4, the client the real-time endpoint is tested with.
[ -d whatsapp-server/tests/socketio-client/node_modules/socket.io-client ] || (cd whatsapp-server/tests/socketio-client && npm ci --no-audit --no-fund --loglevel=error)

if ! command -v cargo-nextest >/dev/null 2>&1; then
    echo "installing cargo-nextest"
    cargo install --locked cargo-nextest
fi
