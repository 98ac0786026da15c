#!/usr/bin/env bash
# Contract fuzzing: schemathesis (all checks) against the running binary's /openapi.json, once as a
# signed-in admin (public and private routes) and once with a server key (server routes).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)
VENV=${SCHEMATHESIS_VENV:-$ROOT/target/schemathesis-venv}
PORT=${PORT:-18090}
BASE=http://127.0.0.1:$PORT
KEY=contract-server-key-0123456789

if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check schemathesis
fi

(cd "$ROOT" && cargo build --quiet --bin users-service)
DB=users_contract_$$
export USERS__DATABASE__URL=postgres://postgres@127.0.0.1:5432/$DB
export USERS__SERVER__LISTEN=127.0.0.1:$PORT
export USERS__SERVER_API__KEYS=contract:$KEY
export USERS__RATE_LIMIT__LOGIN_PER_MINUTE=1000000
# the Telegram route checks payloads (hash, auth_date, replay) only when a bot is configured
export USERS__OAUTH__TELEGRAM__BOT_TOKEN=123456:contract-bot-token
export USERS__LOG__FORMAT=json
export RUST_LOG=warn
"$ROOT/target/debug/users-service" > /tmp/users-contract.log 2>&1 &
SVC=$!
trap 'kill $SVC 2>/dev/null; wait $SVC 2>/dev/null; psql -q postgres://postgres@127.0.0.1:5432/postgres -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 300); do curl -fs "$BASE/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done

curl -fs -XPOST "$BASE/api/v1/server/users/sign_up" -H 'content-type: application/json' -H "authorization: Bearer $KEY" \
  -d '{"email":"fuzz-admin@example.com","password":"correct horse battery staple","first_name":"Fuzz","role":"admin"}' >/dev/null
TOKEN=$(curl -fs -XPOST "$BASE/api/v1/public/users/token" -H 'content-type: application/json' \
  -d '{"email":"fuzz-admin@example.com","password":"correct horse battery staple"}' | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')

st() { "$VENV/bin/schemathesis" run "$BASE/openapi.json" --checks all --workers 2 --max-examples "${MAX_EXAMPLES:-25}" \
  --suppress-health-check all --warnings off "$@"; }

passed=0; failed=0
# logout would end the fuzzer's own session; the notification stream never ends by design (it is
# driven by tests/api/notifications.rs over a real socket instead)
if st -H "Authorization: Bearer $TOKEN" --exclude-tag server --exclude-path /api/v1/private/users/logout \
    --exclude-path /api/v1/private/users/me/notifications/stream; then
  passed=$((passed + 1)); else failed=$((failed + 1)); fi
if st -H "Authorization: Bearer $KEY" --include-tag server; then
  passed=$((passed + 1)); else failed=$((failed + 1)); fi
echo "contract: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
