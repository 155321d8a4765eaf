#!/usr/bin/env bash
# Starts an S3-compatible server for tests on 127.0.0.1:<port> (default 9000): moto's
# `moto_server`, installed from PyPI (`moto[server]`) if it is missing.
#
#   scripts/s3-server.sh 9000 &
#   export S3_TEST_ENDPOINT=http://127.0.0.1:9000
#   cargo test -p whatsapp-storage --test backup_s3
#
# The tests start their own server on a free port when `moto_server` is on PATH and
# S3_TEST_ENDPOINT is unset; this script is for CI set-up and manual runs. Any credentials
# work (moto does not check them); the tests create their bucket.
set -euo pipefail

port="${1:-9000}"
if ! command -v moto_server >/dev/null 2>&1; then
  echo "moto_server not found; installing moto[server] from PyPI" >&2
  python3 -m pip install --quiet 'moto[server]==5.*'
fi
exec moto_server -H 127.0.0.1 -p "$port"
