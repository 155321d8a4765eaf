#!/usr/bin/env bash
# The main job end to end on embedded defaults: the emulator instead of WhatsApp, real
# Chromium, SQLite and local backups under ./data, no Redis. Installs Chromium if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium fonts-liberation >/dev/null
fi
exec cargo run -p whatsapp-examples --example demo -- "$@"
