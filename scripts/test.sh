#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs and starts what the tests need:
# Chromium (Debian package), the S3 test server (moto, PyPI), Postgres and Redis (started
# if they are installed but not running). Fails loudly when something cannot be had.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

log "system dependencies"
scripts/install-deps.sh

log "services"
scripts/services.sh

export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

log "doc tests"
cargo test --workspace --doc

# Last, so that its summary ("N tests run: N passed") closes the log.
log "tests"
cargo nextest run --workspace --no-fail-fast
