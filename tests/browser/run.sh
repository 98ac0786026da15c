#!/usr/bin/env bash
# The browser suite: installs Debian's Chromium and playwright-core if missing, starts the service
# on :8080 against a fresh database (short access TTL, CORS for http://localhost:3000), runs e2e.mjs.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)

export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
[ -d node_modules/playwright-core ] || npm install --no-audit --no-fund --silent >/dev/null

(cd "$ROOT" && cargo build --quiet --bin users-service)
DB=users_browser_$$
export USERS__DATABASE__URL=postgres://postgres@127.0.0.1:5432/$DB
export USERS__SERVER__LISTEN=127.0.0.1:8080
export USERS__SERVER__CORS_ORIGINS=http://localhost:3000
export USERS__COOKIES__SECURE=false
export USERS__AUTH__ACCESS_TTL_SECS=2
export USERS__LOG__FORMAT=json
export RUST_LOG=warn
"$ROOT/target/debug/users-service" > /tmp/users-browser.log 2>&1 &
SVC=$!
trap 'kill $SVC 2>/dev/null; wait $SVC 2>/dev/null; psql -q postgres://postgres@127.0.0.1:5432/postgres -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 300); do curl -fs http://127.0.0.1:8080/health/ready >/dev/null 2>&1 && break; sleep 0.1; done
ACCESS_TTL=2 node e2e.mjs
