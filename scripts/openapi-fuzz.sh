#!/usr/bin/env bash
# Checks the OpenAPI document against the live server with schemathesis (PyPI): every
# generated request must get an answer the document declares (status, content type, body
# schema, headers), never a 5xx, and the keys must be enforced. Bounded: a fixed seed and a
# fixed number of cases per operation; CI runs it (scripts/test.sh).
#
# Three passes, all on loopback, against a fresh data directory:
#   1. a tenant's key, random values everywhere (mostly unknown ids: 404s, bad input: 400s);
#   2. the same key with the path ids pinned to fixtures (a session linked through the
#      emulator, its tenant), so the handlers behind the 404 run too;
#   3. the admin key, random values, without the stateful phase (it would delete fixtures).
#
# Needs: target/debug/whatsapp-server and whatsapp-emulator built (scripts/demo.sh builds both), Chromium, schemathesis (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${FUZZ_PORT:-14200}"
EMULATOR_PORT="${FUZZ_EMULATOR_PORT:-14210}"
EXAMPLES="${FUZZ_MAX_EXAMPLES:-25}"
SEED="${FUZZ_SEED:-20261203}"
BIN=target/debug/whatsapp-server
EMULATOR=(target/debug/whatsapp-emulator)
PHONE="34600000001"
CHECKS="${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,missing_required_header,ignored_auth,unsupported_method}"

fail() { printf '\nopenapi-fuzz failed: %s\n' "$*" >&2; exit 1; }
command -v st >/dev/null 2>&1 || fail "schemathesis (st) is not installed: run scripts/install-deps.sh"
for b in "$BIN" "${EMULATOR[0]}"; do [ -x "$b" ] || fail "$b is not built: cargo build -p whatsapp-server -p whatsapp-emulator"; done

WORK="$(mktemp -d)"
EMULATOR_PID=""
SERVER_PID=""
cleanup() {
    for pid in "$SERVER_PID" "$EMULATOR_PID"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

"${EMULATOR[@]}" --listen "127.0.0.1:$EMULATOR_PORT" --tls --fast >"$WORK/emulator.log" 2>&1 &
EMULATOR_PID=$!
EMU="https://127.0.0.1:$EMULATOR_PORT/_emulator"
for _ in $(seq 100); do
    curl -fsk "$EMU/devices" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsk "$EMU/devices" >/dev/null || fail "the emulator did not start: $(tail -5 "$WORK/emulator.log")"

ADMIN_KEY="fuzz-admin-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
DATA_DIR="$WORK/data" SESSIONS_PATH="$WORK/data/sessions" PORT="$PORT" HOST=127.0.0.1 \
CHROMIUM_ARGS="--host-resolver-rules=\"MAP web.whatsapp.com 127.0.0.1:$EMULATOR_PORT\" --ignore-certificate-errors" \
KEEPALIVE_TARGET=off LAUNCH_CONCURRENCY=1 ADMIN_API_KEY="$ADMIN_KEY" RUST_LOG=warn \
    env -u DATABASE_URL -u REDIS_URL "$BIN" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
API="http://127.0.0.1:$PORT"
for _ in $(seq 300); do
    curl -fs "$API/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited: $(tail -5 "$WORK/server.log")"
    sleep 0.2
done
curl -fs "$API/readyz" >/dev/null || fail "the server did not become ready"

admin=(-H "Authorization: Bearer $ADMIN_KEY" -H 'content-type: application/json')
json_field() { sed -nE "s/.*\"$1\":\"?([^\",}]*)\"?.*/\1/p"; }

# Fixtures: a tenant, its key, and a session linked through the emulator.
curl -fs "${admin[@]}" -d '{"id":"fuzz"}' "$API/api/tenants" >/dev/null
TENANT_KEY="$(curl -fs "${admin[@]}" -d '{}' "$API/api/tenants/fuzz/keys" | json_field key)"
[ -n "$TENANT_KEY" ] || fail "could not create the tenant's key"
tenant=(-H "Authorization: Bearer $TENANT_KEY" -H 'content-type: application/json')
curl -fs "${tenant[@]}" -d '{"id":"linked"}' "$API/api/sessions" >/dev/null
status() { curl -fs "${tenant[@]}" "$API/api/sessions/linked" | json_field status; }
for _ in $(seq 450); do [ "$(status)" = qr ] && break; sleep 0.2; done
ref="$(curl -fs "${tenant[@]}" "$API/api/sessions/linked/qr" | sed -nE 's/.*"qr":"([^,]*),.*/\1/p')"
[ -n "$ref" ] || fail "the fixture session showed no QR"
curl -fsk -H 'content-type: application/json' -d "{\"ref\":\"$ref\",\"phone\":\"$PHONE\"}" "$EMU/scan" >/dev/null
for _ in $(seq 450); do [ "$(status)" = ready ] && break; sleep 0.2; done
[ "$(status)" = ready ] || fail "the fixture session did not become ready"

run() { # run <name> <key> <config file> [st options…]
    local name="$1" key="$2" config="$3"
    shift 3
    echo "==> schemathesis: $name"
    # From the work directory: schemathesis keeps its cache in the current one.
    if ! (cd "$WORK" && st --config-file "$config" run "$API/api/openapi.json" -H "Authorization: Bearer $key" \
        --checks "$CHECKS" --max-examples "$EXAMPLES" --seed "$SEED" --workers 1 \
        --request-timeout 40 --generation-with-security-parameters false --no-color "$@" >"$WORK/$name.log" 2>&1); then
        cat "$WORK/$name.log" >&2
        tail -50 "$WORK/server.log" >&2
        fail "schemathesis found problems ($name)"
    fi
    grep -E "generated|passed|failures" "$WORK/$name.log" | tail -3
}

# An empty configuration file: nothing from the working directory applies.
: >"$WORK/none.toml"
run tenant-random "$TENANT_KEY" "$WORK/none.toml" --phases examples,coverage,fuzzing

# The fixtures' ids in every path; deleting or logging the session out would end the pass's
# point (those two run in the random passes).
cat >"$WORK/pinned.toml" <<EOF
[parameters]
"path.id" = "linked"
"path.tenant" = "fuzz"
"path.phone" = "$PHONE"
EOF
run tenant-pinned "$TENANT_KEY" "$WORK/pinned.toml" --phases examples,coverage,fuzzing \
    --exclude-name 'DELETE /api/sessions/{id}' --exclude-name 'POST /api/sessions/{id}/logout'

run admin-random "$ADMIN_KEY" "$WORK/none.toml" --phases examples,coverage,fuzzing

grep -q "panicked" "$WORK/server.log" && { cat "$WORK/server.log" >&2; fail "the server panicked"; }
echo "openapi-fuzz: 0 server errors, 0 schema violations"
