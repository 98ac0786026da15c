#!/usr/bin/env bash
# The observability suite: promtool (Debian's prometheus package, unpacked under target/ when it is
# not installed) checks the Prometheus config and alert rules in deploy/observability/, lints a live
# scrape of the binary's /metrics, and checks that every series the rules name is in that scrape.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)
PORT=${PORT:-18091}
BASE=http://127.0.0.1:$PORT

PROMTOOL=$(command -v promtool || true)
if [ -z "$PROMTOOL" ]; then
  PROMTOOL=$ROOT/target/promtool/usr/bin/promtool
  if [ ! -x "$PROMTOOL" ]; then
    work=$(mktemp -d)
    (cd "$work" && { apt-get download prometheus >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get download prometheus >/dev/null; }; })
    mkdir -p "$ROOT/target/promtool"
    dpkg -x "$work"/prometheus_*.deb "$ROOT/target/promtool"
    rm -rf "$work"
  fi
fi

passed=0; failed=0
check() {
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok   $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}

check "promtool check config" "$PROMTOOL" check config "$ROOT/deploy/observability/prometheus.yml"
check "promtool check rules" "$PROMTOOL" check rules "$ROOT/deploy/observability/alerts.yml"

(cd "$ROOT" && cargo build --quiet --bin users-service)
DB=users_observability_$$
export USERS__DATABASE__URL=postgres://postgres@127.0.0.1:5432/$DB
export USERS__SERVER__LISTEN=127.0.0.1:$PORT
export USERS__LOG__FORMAT=json
export RUST_LOG=warn
"$ROOT/target/debug/users-service" > /tmp/users-observability.log 2>&1 &
SVC=$!
trap 'kill $SVC 2>/dev/null; wait $SVC 2>/dev/null; psql -q postgres://postgres@127.0.0.1:5432/postgres -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 300); do curl -fs "$BASE/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done

# some traffic, so every family has a sample: a sign-up, a sign-in, a wrong one, an unknown path
curl -fs -XPOST "$BASE/api/v1/public/users/sign_up" -H 'content-type: application/json' \
  -d '{"email":"obs@example.com","password":"correct horse battery staple","first_name":"Obs"}' >/dev/null
curl -fs -XPOST "$BASE/api/v1/public/users/login" -H 'content-type: application/json' \
  -d '{"email":"obs@example.com","password":"correct horse battery staple"}' >/dev/null
curl -s -XPOST "$BASE/api/v1/public/users/login" -H 'content-type: application/json' \
  -d '{"email":"obs@example.com","password":"wrong password here"}' >/dev/null
curl -s "$BASE/no/such/path" >/dev/null
SCRAPE=$(mktemp)
curl -fs "$BASE/metrics" > "$SCRAPE"

check "promtool check metrics (a live scrape)" bash -c "\"$PROMTOOL\" check metrics < \"$SCRAPE\""
missing=""
for series in $(grep -oE '\b(http_[a-z_]+|users_[a-z_]+|password_[a-z_]+|db_pool_[a-z_]+|outbox_[a-z_]+|messages_[a-z_]+|events_[a-z_]+)' \
    "$ROOT/deploy/observability/alerts.yml" | sort -u); do
  grep -q "^$series" "$SCRAPE" || missing="$missing $series"
done
check "every series the rules name is exported${missing:+ (missing:$missing)}" test -z "$missing"
# the dashboard's queries, likewise
missing=""
DASHBOARD=$ROOT/deploy/observability/grafana/dashboards/users-service.json
exprs=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("\n".join(t["expr"] for p in d["panels"] for t in p["targets"]))' "$DASHBOARD")
[ -n "$exprs" ] || missing=" (no queries found)"
for series in $(grep -oE '\b(http_[a-z_]+|users_[a-z_]+|password_[a-z_]+|db_pool_[a-z_]+|outbox_[a-z_]+|messages_[a-z_]+|events_[a-z_]+)' <<< "$exprs" | sort -u); do
  grep -q "^$series" "$SCRAPE" || missing="$missing $series"
done
check "every series the dashboard queries is exported${missing:+ (missing:$missing)}" test -z "$missing"
rm -f "$SCRAPE"
echo "observability: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
