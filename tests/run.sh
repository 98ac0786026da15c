#!/usr/bin/env bash
# The whole test suite: the Rust suite (unit and integration tests against PostgreSQL), contract
# fuzzing of /openapi.json with schemathesis, the end-to-end test in headless Chromium, and promtool
# over the Prometheus config, alert rules and a live scrape.
# Each suite installs what it needs (a Python venv under target/, Chromium from Debian, npm packages).
set -uo pipefail
cd "$(dirname "$0")/.."
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
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
