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

# CI builds once from a fresh clone: incremental caches would only take disk (the target
# directory shares the machine's disk with everything else).
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi
log "disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free where target/ is built"

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

log "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

log "README's first command, twice (the second run must restore the session without a QR)"
demo_dir="$(mktemp -d)"
for run in 1 2; do
    if ! DEMO_DATA_DIR="$demo_dir" DEMO_ONCE=1 PORT=14000 EMULATOR_PORT=14010 WEBHOOK_PORT=14020 \
        bash scripts/demo.sh >"$demo_dir/run$run.log" 2>&1; then
        cat "$demo_dir/run$run.log" "$demo_dir/server.log" >&2 || true
        echo "scripts/demo.sh failed (run $run)" >&2
        exit 1
    fi
done
grep -q "ready again without a QR scan" "$demo_dir/run2.log" || {
    cat "$demo_dir/run2.log" >&2
    echo "scripts/demo.sh: the second run did not restore the session without a QR" >&2
    exit 1
}
echo "demo: linked on the first run, restored without a QR on the second"
rm -rf "$demo_dir"

log "the OpenAPI document against the live server (schemathesis, bounded)"
scripts/openapi-fuzz.sh

log "doc tests"
cargo test --workspace --doc

# Last, so that its summary ("N tests run: N passed") closes the log.
log "tests (target/ holds $(du -sh target 2>/dev/null | cut -f1) before they build; $(df -h --output=avail . | tail -1 | tr -d ' ') free)"
cargo nextest run --workspace --no-fail-fast
