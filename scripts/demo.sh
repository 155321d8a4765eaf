#!/usr/bin/env bash
# The main job end to end on embedded defaults: the WhatsApp Web emulator instead of WhatsApp,
# real Chromium, the server on SQLite with local backups under ./data, no Redis.
#
# It installs Chromium if missing, builds, starts the emulator and the server, links a demo
# session (the emulator plays the phone that scans the QR), sends a text through the queue,
# has the emulated phone of a friend write to the session and shows that message reaching a
# webhook receiver on loopback, takes a backup, then prints the dashboard URL and the admin
# key and keeps running until Ctrl-C. Run it again: the session comes back connected without
# a new QR.
#
# Environment: DEMO_DATA_DIR (default ./data), PORT (4000), EMULATOR_PORT (4010),
# WEBHOOK_PORT (4020), DEMO_ONCE=1 to stop after the walk-through instead of waiting for
# Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA="${DEMO_DATA_DIR:-./data}"
PORT="${PORT:-4000}"
EMULATOR_PORT="${EMULATOR_PORT:-4010}"
WEBHOOK_PORT="${WEBHOOK_PORT:-4020}"
PHONE="34600000000"      # a fake number: the emulator's phone that scans the QR
RECIPIENT="34600000099"  # a fake recipient known to the emulator
BIN=target/debug/whatsapp-server
EMULATOR_BIN=target/debug/whatsapp-emulator

say() { printf '\n==> %s\n' "$*"; }
fail() { printf '\ndemo failed: %s\n' "$*" >&2; exit 1; }

if ! command -v chromium >/dev/null 2>&1; then
    say "installing chromium with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium fonts-liberation >/dev/null
fi
command -v curl >/dev/null 2>&1 || fail "curl is needed (apt-get install -y curl)"
command -v python3 >/dev/null 2>&1 || fail "python3 is needed for the demo's webhook receiver"

say "building whatsapp-server and whatsapp-emulator"
cargo build -p whatsapp-server -p whatsapp-emulator

mkdir -p "$DATA"
DATA="$(cd "$DATA" && pwd)"
EMULATOR_PID=""
SERVER_PID=""
RECEIVER_PID=""
cleanup() {
    # Only the processes this script started, by PID.
    if [ -n "$RECEIVER_PID" ] && kill -0 "$RECEIVER_PID" 2>/dev/null; then
        kill -TERM "$RECEIVER_PID" 2>/dev/null || true
        wait "$RECEIVER_PID" 2>/dev/null || true
    fi
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ -n "$EMULATOR_PID" ] && kill -0 "$EMULATOR_PID" 2>/dev/null; then
        kill -TERM "$EMULATOR_PID" 2>/dev/null || true
        wait "$EMULATOR_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting the WhatsApp Web emulator on https://127.0.0.1:$EMULATOR_PORT (plays web.whatsapp.com)"
"$EMULATOR_BIN" --listen "127.0.0.1:$EMULATOR_PORT" --tls --state-file "$DATA/emulator-state.json" \
    >"$DATA/emulator.log" 2>&1 &
EMULATOR_PID=$!
EMU="https://127.0.0.1:$EMULATOR_PORT/_emulator"
for _ in $(seq 100); do
    curl -fsk "$EMU/devices" >/dev/null 2>&1 && break
    kill -0 "$EMULATOR_PID" 2>/dev/null || fail "the emulator exited: $(tail -5 "$DATA/emulator.log")"
    sleep 0.2
done
curl -fsk -H 'content-type: application/json' -d "{\"phone\":\"$RECIPIENT\"}" "$EMU/accounts" >/dev/null

say "starting the server on http://127.0.0.1:$PORT (SQLite and backups under $DATA)"
DATA_DIR="$DATA" \
SESSIONS_PATH="$DATA/whatsapp-sessions" \
PORT="$PORT" HOST=127.0.0.1 \
CHROMIUM_ARGS="--host-resolver-rules=\"MAP web.whatsapp.com 127.0.0.1:$EMULATOR_PORT\" --ignore-certificate-errors" \
KEEPALIVE_TARGET=off \
WEBHOOK_ALLOW_HOSTS=127.0.0.1 \
RUST_LOG="${RUST_LOG:-info,chromiumoxide=off}" \
    env -u DATABASE_URL -u REDIS_URL -u ADMIN_API_KEY "$BIN" >"$DATA/server.log" 2>&1 &
SERVER_PID=$!
API="http://127.0.0.1:$PORT"
for _ in $(seq 300); do
    curl -fs "$API/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited: $(tail -5 "$DATA/server.log")"
    sleep 0.2
done
curl -fs "$API/readyz" >/dev/null || fail "the server did not become ready; see $DATA/server.log"
KEY="$(tr -d '[:space:]' <"$DATA/admin-api-key")"
auth=(-H "Authorization: Bearer $KEY")

json_field() { sed -nE "s/.*\"$1\":\"?([^\",}]*)\"?.*/\1/p"; }
status() { curl -fs "${auth[@]}" "$API/api/sessions/demo" | json_field status; }
wait_status() { # wait_status <pattern> <what> [seconds]
    local s=""
    for _ in $(seq $((${3:-90} * 5))); do
        s="$(status || true)"
        [[ "$s" =~ ^($1)$ ]] && { echo "$s"; return 0; }
        sleep 0.2
    done
    fail "session demo did not reach $2 (status: ${s:-unknown}); see $DATA/server.log"
}

if curl -fs "${auth[@]}" "$API/api/sessions/demo" >/dev/null 2>&1; then
    say "session demo exists: restored at start-up from its profile (or its backup)"
else
    say "creating session demo"
    curl -fs "${auth[@]}" -H 'content-type: application/json' \
        -d '{"id":"demo"}' "$API/api/sessions" >/dev/null
fi

s="$(wait_status 'qr|ready' 'a QR or ready')"
if [ "$s" = qr ]; then
    ref="$(curl -fs "${auth[@]}" "$API/api/sessions/demo/qr" | sed -nE 's/.*"qr":"([^,]*),.*/\1/p')"
    say "QR shown (ref ${ref:0:18}…); the emulated phone $PHONE scans it"
    curl -fsk -H 'content-type: application/json' -d "{\"ref\":\"$ref\",\"phone\":\"$PHONE\"}" \
        "$EMU/scan" >/dev/null
    wait_status ready 'ready' >/dev/null
    echo "   linked: ready"
else
    echo "   ready again without a QR scan"
fi

say "sending a text through the durable, paced queue"
id="$(curl -fs "${auth[@]}" -H 'content-type: application/json' \
    -d "{\"to\":\"$RECIPIENT\",\"text\":\"hello from the demo at $(date -u +%H:%M:%S)\"}" \
    "$API/api/sessions/demo/messages" | json_field message_id)"
for _ in $(seq 300); do
    m="$(curl -fs "${auth[@]}" "$API/api/sessions/demo/messages/$id" | json_field status)"
    [ "$m" = sent ] && break
    sleep 0.2
done
[ "$m" = sent ] || fail "message $id is $m"
echo "   message $id sent"

say "a friend writes to the session: the message reaches the tenant's webhook"
HOOKS="$DATA/webhooks.log"
: >"$HOOKS"
python3 scripts/lib/webhook-receiver.py "$WEBHOOK_PORT" "$HOOKS" &
RECEIVER_PID=$!
# Listening before anything is sent to it: a refused delivery is retried only ~30 s later.
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$WEBHOOK_PORT/" && break
    kill -0 "$RECEIVER_PID" 2>/dev/null || fail "the webhook receiver exited"
    sleep 0.1
done
# The session belongs to the tenant `default`; create it (409 when it exists) and point its
# webhook at the receiver.
curl -s "${auth[@]}" -H 'content-type: application/json' -d '{"id":"default"}' \
    "$API/api/tenants" >/dev/null
curl -fs "${auth[@]}" -X PUT -H 'content-type: application/json' \
    -d "{\"url\":\"http://127.0.0.1:$WEBHOOK_PORT/hook\"}" "$API/api/tenants/default/webhook" >/dev/null \
    || fail "could not set the tenant's webhook"
greeting="hi bot, it is $(date -u +%H:%M:%S)"
curl -fsk -H 'content-type: application/json' \
    -d "{\"from\":\"$RECIPIENT\",\"to\":\"$PHONE\",\"body\":\"$greeting\"}" "$EMU/messages" >/dev/null \
    || fail "the emulated phone could not send"
for _ in $(seq 300); do
    grep -q "\"type\":\"message\".*$greeting" "$HOOKS" && break
    kill -0 "$RECEIVER_PID" 2>/dev/null || fail "the webhook receiver exited"
    sleep 0.2
done
grep -q "\"type\":\"message\".*$greeting" "$HOOKS" \
    || fail "the message did not reach the webhook (received: $(cat "$HOOKS")); see $DATA/server.log"
echo "   webhook received: message from $RECIPIENT: \"$greeting\" (all deliveries in $HOOKS)"
history="$(curl -fs "${auth[@]}" "$API/api/sessions/demo/chats/$RECIPIENT@c.us/messages?limit=20")"
case "$history" in
    *"$greeting"*) echo "   and it is in the history: GET /api/sessions/demo/chats/$RECIPIENT@c.us/messages" ;;
    *) fail "the message is not in the history: $history" ;;
esac

say "backing the session's login up (archive, verify)"
curl -fs "${auth[@]}" -X POST "$API/api/sessions/demo/backups" | json_field backup_id | sed 's/^/   /'

cat <<EOF

Everything runs:
  dashboard   $API/            (sign in with the admin key)
  admin key   $KEY
  API docs    $API/api/docs/
  metrics     $API/metrics     (Authorization: Bearer <admin key>)
  emulator    $EMU/devices     (the phone: POST $EMU/scan {"ref","phone"} links a QR,
                                POST $EMU/messages {"from","to","body"} writes to it)
  webhooks    $HOOKS   (what the tenant's webhook received)
  logs        $DATA/server.log, $DATA/emulator.log

Run this script again: session demo comes back ready without a new QR.
EOF

if [ "${DEMO_ONCE:-0}" = 1 ]; then
    say "DEMO_ONCE=1: stopping (the server closes its browsers gracefully)"
    exit 0
fi
echo "Ctrl-C stops both."
wait "$SERVER_PID"
