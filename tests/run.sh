#!/usr/bin/env bash
# The whole test suite: the Rust suite (unit and integration tests against PostgreSQL), contract
# fuzzing of /openapi.json with schemathesis, the end-to-end test in headless Chromium, promtool
# over the Prometheus config, alert rules and a live scrape, and the Kubernetes manifests rendered
# and validated against the Kubernetes schemas.
# Each suite installs what it needs (a Python venv under target/, Chromium from Debian, npm packages).
set -uo pipefail
cd "$(dirname "$0")/.."
# RabbitMQ (the events tests publish to it): 127.0.0.1:5672, guest/guest; installed from Debian's
# packages and started when it does not answer
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! answers 5672; then
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq rabbitmq-server >/dev/null
  fi
  (service rabbitmq-server start || rabbitmq-server -detached) >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do answers 5672 && break; sleep 1; done
fi
answers 5672 || { echo "RabbitMQ does not answer on 127.0.0.1:5672"; exit 1; }
# Redis (the shared rate limits): 127.0.0.1:6379, from Debian's packages, started when it does not answer
if ! answers 6379; then
  if ! command -v redis-server >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do answers 6379 && break; sleep 1; done
fi
answers 6379 || { echo "Redis does not answer on 127.0.0.1:6379"; exit 1; }
# PgBouncer (the pgbouncer tests start their own, in transaction mode, on a free port): Debian's
if ! [ -x /usr/sbin/pgbouncer ] && ! command -v pgbouncer >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null
fi
passed=0
failed=0
suite() {
  local name=$1
  shift
  echo "== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "== $name FAILED"; fi
}
suite "rust: cargo test" cargo test
suite "contract: schemathesis" bash tests/contract/run.sh
suite "browser: chromium" bash tests/browser/run.sh
suite "observability: promtool" bash tests/observability/run.sh
suite "k8s: kustomize and schemas" bash tests/k8s/run.sh
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
