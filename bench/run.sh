#!/usr/bin/env bash
# One-command benchmark: builds the release binary, runs it against a fresh database on the local
# PostgreSQL, drives each scenario with wrk, measures the machine's ceilings (argon2id, pgbench) in
# the same run, and writes bench/RESULTS.md. Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

DURATION=${DURATION:-15}
PORT=${PORT:-18089}
PGURL=postgres://postgres@127.0.0.1:5432
DB=users_bench_$$
PGB=pgbench_$$
BASE=http://127.0.0.1:$PORT
OUT=bench/out
RESULTS=bench/RESULTS.md
mkdir -p "$OUT"

# 2 000 notification streams need as many sockets (the service started below inherits this)
ulimit -n 65536 2>/dev/null || true
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || { apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null; }
export PATH=$PATH:/usr/sbin
command -v pgbench >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-contrib >/dev/null; }

SVC=""
SAMPLER=""
SINK=""
OTLP=""
PGBOUNCER_PID=""
EXTRA_PIDS=""
cleanup() {
  [ -n "$PGBOUNCER_PID" ] && kill "$(cat "$PGBOUNCER_PID")" 2>/dev/null || true
  [ -n "$OTLP" ] && kill "$OTLP" 2>/dev/null || true
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
  [ -n "$SINK" ] && kill "$SINK" 2>/dev/null || true
  for pid in $EXTRA_PIDS; do kill "$pid" 2>/dev/null || true; done
  [ -n "$SVC" ] && kill "$SVC" 2>/dev/null && wait "$SVC" 2>/dev/null || true
  psql -q "$PGURL/postgres" -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  psql -q "$PGURL/postgres" -c "drop database if exists $PGB with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== building"
cargo build --release --locked --bin users-service 2>&1 | tail -1
BIN=target/release/users-service

cargo build --release --locked --example argon2_rate --example amqp_ceiling --example sse_fanout --example otlp_sink 2>&1 | tail -1
# The ceilings drift with the machine (on a shared VM, CPU steal comes and goes), so each is
# measured right before and right after the scenarios it is compared with, and the mean is used.
# prints "FRESH REUSED": hashes/s with a fresh buffer per hash (the crate's plain API) and with a
# reused one (as the service hashes)
argon2_rate() {
  target/release/examples/argon2_rate | tee -a "$OUT/argon2.txt" \
    | awk -F= '/^ARGON2_FRESH=/ {f = $2} /^ARGON2_REUSED=/ {r = $2} END {print f, r}'
}
pgbench_tps() {
  pgbench -S -c16 -j2 -T"$DURATION" -h 127.0.0.1 -U postgres "$PGB" 2>/dev/null \
    | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n1
}
mean() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (a + b) / 2 }'; }
: > "$OUT/argon2.txt"
cpu_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9 }' /proc/stat; }
read -r TICKS0 STEAL0 < <(cpu_ticks)

psql -q "$PGURL/postgres" -c "create database $PGB" >/dev/null
pgbench -q -i -s 10 "$PGURL/$PGB" >/dev/null 2>&1

export USERS__DATABASE__URL=$PGURL/$DB
export USERS__SERVER__LISTEN=127.0.0.1:$PORT
export USERS__COOKIES__SECURE=false
export USERS__RATE_LIMIT__LOGIN_PER_MINUTE=100000000
export USERS__AUTH__MAX_FAILED_LOGINS=100000000
# room in the hashing queue for every login of the 256-connection flood (the default, 128, would
# answer the excess 503 at once); the hang-up flood meets the same bound
export USERS__AUTH__HASH_QUEUE_MAX=300
export USERS__SERVER_API__KEYS=bench:bench-server-key-0123456789
export USERS__LOG__FORMAT=json
# the access tokens minted below serve every GET me scenario of the run, which lasts longer than
# the default 15 minutes: with that lifetime the late rows would measure 401s
export USERS__AUTH__ACCESS_TTL_SECS=86400
# the courier delivers to a local SMTP sink (bench/smtp_sink.py)
SINK_PORT=$((PORT + 1))
python3 bench/smtp_sink.py "$SINK_PORT" &
SINK=$!
export USERS__EMAIL__SMTP_URL=smtp://127.0.0.1:$SINK_PORT
export RUST_LOG=warn

echo "== migrate, then time start-up to ready"
$BIN migrate >/dev/null
START_NS=$(date +%s%N)
$BIN > "$OUT/service.log" 2>&1 &
SVC=$!
until curl -fs "$BASE/health/ready" >/dev/null 2>&1; do sleep 0.01; done
READY_MS=$(( ($(date +%s%N) - START_NS) / 1000000 ))

# peak RSS, sampled every 100 ms into a file (VmHWM would only give the whole run's peak)
: > "$OUT/rss.samples"
start_sampler() {
  ( while kill -0 "$SVC" 2>/dev/null; do
      awk '/VmRSS/ {print $2}' "/proc/$SVC/status" 2>/dev/null >> "$OUT/rss.samples"; sleep 0.1
    done ) &
  SAMPLER=$!
}
start_sampler
rss_mark() { wc -l < "$OUT/rss.samples" 2>/dev/null || echo 0; }
rss_peak_since() { tail -n +"$(( $1 + 1 ))" "$OUT/rss.samples" | sort -n | tail -n1 | awk '{printf "%.1f", $1/1024}'; }

echo "== seeding"
PASSWORD="correct horse battery staple"
curl -fs -XPOST "$BASE/api/v1/public/users/sign_up" -H 'content-type: application/json' \
  -d "{\"email\":\"bench@bench.example\",\"password\":\"$PASSWORD\",\"first_name\":\"Bench\"}" >/dev/null
curl -fs -XPOST "$BASE/api/v1/server/users/sign_up" -H 'content-type: application/json' \
  -H "authorization: Bearer bench-server-key-0123456789" \
  -d "{\"email\":\"admin@bench.example\",\"password\":\"$PASSWORD\",\"first_name\":\"Admin\",\"role\":\"admin\"}" >/dev/null
token_of() { curl -fs -XPOST "$BASE/api/v1/public/users/token" -H 'content-type: application/json' \
  -d "{\"email\":\"$1\",\"password\":\"$PASSWORD\"}"; }
# GET me is driven over 256 users, one session each, picked at random per request (a crowd, not
# one session asked 32 times at once)
psql -q "$PGURL/$DB" -c "insert into users (id, email, first_name, role, password_hash)
  select gen_random_uuid(), 'crowd' || g || '@bench.example', 'Crowd', 'methodist',
         (select password_hash from users where email = 'bench@bench.example')
  from generate_series(1, 256) g" >/dev/null
seq 1 256 | xargs -P4 -I{} curl -fs -w '\n' -XPOST "$BASE/api/v1/public/users/token" \
    -H 'content-type: application/json' -d "{\"email\":\"crowd{}@bench.example\",\"password\":\"$PASSWORD\"}" \
  | grep -o '"access_token":"[^"]*"' | cut -d'"' -f4 > "$OUT/access.tokens"  # parallel bodies may share a line
export ADMIN_TOKEN=$(token_of admin@bench.example | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
: > "$OUT/refresh.tokens"
for _ in $(seq 1 16); do
  echo "$(token_of bench@bench.example | sed -n 's/.*"refresh_token":"\([^"]*\)".*/\1/p')" >> "$OUT/refresh.tokens"
done
# the admin search's population: USERS users, grown to 1 000 000 before its second row; vacuumed
# as autovacuum would leave a settled table (the trigram index's pending list merged)
seed_users() {
  # ids ordered like the service's UUIDv7 (time-ordered: newest last), here by the seed's counter
  psql -q "$PGURL/$DB" -c "insert into users (id, email, first_name, last_name, role)
    select ('00000000-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid,
           'user' || g || '@bench.example', 'Name' || g, 'Family' || (g % 1000), 'methodist'
    from generate_series($1, $2) g" >/dev/null
  psql -q "$PGURL/$DB" -c "vacuum analyze users" >/dev/null
}
seed_users 1 100000

ROWS=()
# run NAME EXPECT_2XX wrk-args...: one table row from wrk's report
run() {
  local name=$1; shift
  local mark; mark=$(rss_mark)
  wrk --latency "$@" > "$OUT/$name.txt" 2>&1 || true
  ROWS+=("$(row "$name" "$OUT/$name.txt" "$(rss_peak_since "$mark")")")
  echo "   $name: $(grep 'Requests/sec' "$OUT/$name.txt" | awk '{print $2}') req/s"
}
row() {
  local name=$1 file=$2 rss=$3
  local rps p50 p99 total non2xx sockerr
  rps=$(awk '/Requests\/sec/ {print $2}' "$file")
  p50=$(awk '$1=="50%" {print $2}' "$file")
  p99=$(awk '$1=="99%" {print $2}' "$file")
  total=$(awk '/requests in/ {print $1}' "$file")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$file"); non2xx=${non2xx:-0}
  sockerr=$(awk '/Socket errors/ {s=0; for(i=1;i<=NF;i++) if ($i ~ /^[0-9]+,?$/) s+=$i; print s}' "$file"); sockerr=${sockerr:-0}
  echo "| $name | ${rps:-0} | ${p50:-?} | ${p99:-?} | ${total:-0} | $sockerr | $non2xx | $rss |"
}

echo "== scenarios (${DURATION}s each)"
export ACCESS_TOKENS=$OUT/access.tokens
# warm-up, not recorded: opens the pool's connections and lets PostgreSQL settle their plans
wrk -t2 -c32 -d5s -s bench/lua/me_many.lua "$BASE" >/dev/null 2>&1 || true
PG1=$(pgbench_tps)
HEADER=Authorization run get_me_bearer -t2 -c32 -d"${DURATION}s" -s bench/lua/me_many.lua "$BASE"
HEADER=Cookie run get_me_cookie -t2 -c32 -d"${DURATION}s" -s bench/lua/me_many.lua "$BASE"
PG2=$(pgbench_tps)
export BODY="{\"email\":\"bench@bench.example\",\"password\":\"$PASSWORD\"}" PATH_=/api/v1/public/users/login
A1=$(argon2_rate)
run login -t2 -c32 -d"${DURATION}s" -s bench/lua/post_json.lua "$BASE"
A2=$(argon2_rate)
run sign_up -t2 -c32 -d"${DURATION}s" -s bench/lua/sign_up.lua "$BASE"
A3=$(argon2_rate)
export TOKENS=$OUT/refresh.tokens
run refresh_body -t16 -c16 -d"${DURATION}s" -s bench/lua/refresh.lua "$BASE"
run health_live -t2 -c32 -d"${DURATION}s" "$BASE/health/live"
SEARCH_MAX=99999 run search_100k -t2 -c16 -d"${DURATION}s" -s bench/lua/search.lua "$BASE"
export BODY='{"email":"bench@bench.example"}' PATH_=/api/v1/public/users/passw/forgot
run forgot_known -t2 -c16 -d"${DURATION}s" -s bench/lua/post_json.lua "$BASE"
export BODY='{"email":"nobody@bench.example"}'
run forgot_unknown -t2 -c16 -d"${DURATION}s" -s bench/lua/post_json.lua "$BASE"
# the login flood below posts the login again
export BODY="{\"email\":\"bench@bench.example\",\"password\":\"$PASSWORD\"}" PATH_=/api/v1/public/users/login

echo "== courier: 5 000 queued messages to the local SMTP sink"
psql -q "$PGURL/$DB" -c "insert into messages (id, kind, recipient, subject, body_text, body_html, message_id)
  select gen_random_uuid(), 'password_changed', 'sink' || g || '@bench.example', 'Bench',
         'Hello, Bench! Your password was changed.', '<p>Hello, Bench! Your password was changed.</p>',
         '<bench' || g || '@bench.example>'
  from generate_series(1, 5000) g; select pg_notify('messages', '')" >/dev/null
COURIER_START=$(date +%s%N)
for _ in $(seq 1 1200); do
  LEFT=$(psql -qAt "$PGURL/$DB" -c "select count(*) from messages where status = 'queued'")
  [ "$LEFT" = 0 ] && break
  sleep 0.1
done
COURIER_MS=$(( ($(date +%s%N) - COURIER_START) / 1000000 ))
COURIER_SENT=$(psql -qAt "$PGURL/$DB" -c "select count(*) from messages where status = 'sent' and kind = 'password_changed' and subject = 'Bench'")
COURIER_RATE=$(awk -v n="$COURIER_SENT" -v ms="$COURIER_MS" 'BEGIN { printf "%.1f", (ms > 0 ? n * 1000 / ms : 0) }')
echo "   courier: $COURIER_SENT sent in $COURIER_MS ms ($COURIER_RATE/s)"

echo "== notifications: the inbox with 200 each, then 2 000 streams fed 200 notifications a second"
psql -q "$PGURL/$DB" -c "insert into notifications (id, user_id, kind, title, body, data, read_at)
  select ('00000000-0000-7000-8001-' || lpad(to_hex(row_number() over ()), 12, '0'))::uuid, u.id,
         'bench.kind', 'Notification ' || g, 'A body of a typical length for an in-app notice.',
         jsonb_build_object('n', g), case when g % 3 = 0 then now() end
  from users u cross join generate_series(1, 200) g where u.email like 'crowd%'" >/dev/null
psql -q "$PGURL/$DB" -c "vacuum analyze notifications" >/dev/null
# GET me right before, as the inbox's yardstick (on this VM the rate drifts by a fifth between
# minutes: the GET me run at the start is too far away)
HEADER=Authorization run get_me_before_inbox -t2 -c32 -d"${DURATION}s" -s bench/lua/me_many.lua "$BASE"
ME_PATH=/api/v1/private/users/me/notifications HEADER=Authorization run notifications_list -t2 -c32 -d"${DURATION}s" -s bench/lua/me_many.lua "$BASE"
# the same page asked with a cursor (the largest id: from the newest) is never kept: read from the
# database and rendered every time, as a first page is after each change to its inbox
ME_PATH="/api/v1/private/users/me/notifications?cursor=_____________________w" HEADER=Authorization run notifications_list_read -t2 -c32 -d"${DURATION}s" -s bench/lua/me_many.lua "$BASE"
MARK=$(rss_mark)
target/release/examples/sse_fanout "$BASE" "$OUT/access.tokens" bench-server-key-0123456789 2000 200 15 > "$OUT/fanout.txt" 2>&1 || true
FANOUT_RSS=$(rss_peak_since "$MARK")
fan() { sed -n "s/^$1=//p" "$OUT/fanout.txt"; }
echo "   fan-out: $(fan DELIVERIES_RECEIVED)/$(fan DELIVERIES_EXPECTED) delivered, p50 $(fan LATENCY_P50_MS) ms, p99 $(fan LATENCY_P99_MS) ms, RSS $FANOUT_RSS MiB"

echo "== growing the users table to 1 000 000"
seed_users 100001 1000000
SEARCH_MAX=999999 run search_1m -t2 -c16 -d"${DURATION}s" -s bench/lua/search.lua "$BASE"

# restarts the service with extra settings (sessions and keys live in the database: tokens stay valid)
restart_with() {
  kill "$SVC" 2>/dev/null && wait "$SVC" 2>/dev/null || true
  env "$@" "$BIN" >> "$OUT/service.log" 2>&1 &
  SVC=$!
  until curl -fs "$BASE/health/ready" >/dev/null 2>&1; do sleep 0.05; done
  start_sampler
}
# The rate of this VM drifts by a fifth from one minute to the next, more than the 5 % these rows
# are judged by. So the six modes run side by side, one fresh instance each on the same database
# — plain, /metrics scraped every second, traces exported to a local sink, traces sent to a
# collector that is down, to one that answers each export after two seconds and to one that
# answers 503 — and wrk drives them in turns of SLICE_SECS each,
# SLICES times, the order reversed every other turn; each ratio is taken within its turn and the
# median of the turns is reported, beside each instance's CPU per request from /proc.
SLICES=${SLICES:-12}
SLICE_SECS=${SLICE_SECS:-4}
echo "== GET me plain, with /metrics scraped every second, with traces exported, and with the collector down, slow and failing: $SLICES turns of ${SLICE_SECS} s each, side by side"
OTLP_PORT=$((PORT + 2))
DOWN_PORT=$((PORT + 3))
SLOW_PORT=$((PORT + 8))
FAILING_PORT=$((PORT + 9))
target/release/examples/otlp_sink "$OTLP_PORT" > "$OUT/otlp_sink.txt" &
OTLP=$!
target/release/examples/otlp_sink "$SLOW_PORT" slow > "$OUT/otlp_sink.slow.txt" &
SLOW_SINK=$!
target/release/examples/otlp_sink "$FAILING_PORT" failing > "$OUT/otlp_sink.failing.txt" &
FAILING_SINK=$!
EXTRA_PIDS="$EXTRA_PIDS $SLOW_SINK $FAILING_SINK"
declare -A MODE_PID MODE_URL
# start_mode MODE PORT [VAR=value...]: another instance of the service, on PORT
start_mode() {
  local mode=$1 port=$2; shift 2
  env USERS__SERVER__LISTEN=127.0.0.1:$port "$@" "$BIN" >> "$OUT/service.$mode.log" 2>&1 &
  MODE_PID[$mode]=$!; MODE_URL[$mode]=http://127.0.0.1:$port
  EXTRA_PIDS="$EXTRA_PIDS $!"
  until curl -fs "${MODE_URL[$mode]}/health/ready" >/dev/null 2>&1; do sleep 0.05; done
}
# plain is a fresh instance too: the one above has served every earlier scenario (2 000 streams,
# a million users searched) and cost 48 µs of CPU per GET me where the fresh ones cost 40–44
start_mode plain $((PORT + 7))
start_mode scraped $((PORT + 4))
start_mode traced $((PORT + 5)) USERS__TELEMETRY__OTLP_ENDPOINT=http://127.0.0.1:$OTLP_PORT
# nothing listens on DOWN_PORT
start_mode down $((PORT + 6)) USERS__TELEMETRY__OTLP_ENDPOINT=http://127.0.0.1:$DOWN_PORT
start_mode slow $((PORT + 10)) USERS__TELEMETRY__OTLP_ENDPOINT=http://127.0.0.1:$SLOW_PORT
start_mode failing $((PORT + 11)) USERS__TELEMETRY__OTLP_ENDPOINT=http://127.0.0.1:$FAILING_PORT
( while true; do curl -fs "${MODE_URL[scraped]}/metrics" >/dev/null; sleep 1; done ) &
SCRAPER=$!
EXTRA_PIDS="$EXTRA_PIDS $SCRAPER"
: > "$OUT/rounds.txt"
ticks_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# one turn of a mode: "MODE TURN req/s service-ticks requests non-2xx" into rounds.txt
slice_run() {
  local t0; t0=$(ticks_of "${MODE_PID[$1]}")
  wrk -t2 -c32 -d"${SLICE_SECS}s" -s bench/lua/me_many.lua "${MODE_URL[$1]}" > "$OUT/round.txt" 2>&1 || true
  echo "$1 $2 $(awk '/Requests\/sec/ {print $2}' "$OUT/round.txt") $(( $(ticks_of "${MODE_PID[$1]}") - t0 )) $(awk '/requests in/ {print $1}' "$OUT/round.txt") $(awk '/Non-2xx/ {n = $NF} END {print n + 0}' "$OUT/round.txt")" >> "$OUT/rounds.txt"
}
export HEADER=Authorization
MODES="plain scraped traced down slow failing"
for m in $MODES; do wrk -t2 -c32 -d2s -s bench/lua/me_many.lua "${MODE_URL[$m]}" >/dev/null 2>&1 || true; done
for r in $(seq 1 "$SLICES"); do
  order=$MODES
  [ $((r % 2)) = 0 ] && order=$(echo "$MODES" | tr ' ' '\n' | tac | paste -sd' ')
  for m in $order; do slice_run "$m" "$r"; done
done
awk '{ n[$1] += $5; t[$1] += $4 } END { for (m in n) printf "   %s: %.1f µs/req;", m, t[m] * 10000 / n[m]; print "" }' "$OUT/rounds.txt"
kill "$SCRAPER" 2>/dev/null || true
for m in $MODES; do kill "${MODE_PID[$m]}" 2>/dev/null && wait "${MODE_PID[$m]}" 2>/dev/null || true; done
for pid in $SLOW_SINK $FAILING_SINK; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
EXTRA_PIDS=""
unset HEADER
# the sink prints what it received when it stops (within 5 s, or it is killed)
kill "$OTLP" 2>/dev/null || true
for _ in $(seq 1 50); do kill -0 "$OTLP" 2>/dev/null || break; sleep 0.1; done
kill -9 "$OTLP" 2>/dev/null || true; OTLP=""
HEADER=Authorization run get_me_plain_again -t2 -c32 -d"${DURATION}s" -s bench/lua/me_many.lua "$BASE"

echo "== events: the relay against a plain publisher-confirms loop; requests with publishing on and off"
AMQP=amqp://guest:guest@127.0.0.1:5672/%2f
EXCHANGE=bench.users.events.$$
CEILING=target/release/examples/amqp_ceiling
ceiling() { "$CEILING" publish "$AMQP" "$EXCHANGE" 20000 | sed -n 's/^AMQP_CEILING=//p'; }
unpublished() { psql -qAt "$PGURL/$DB" -c "select count(*) from events where published_at is null"; }
# publishing on against off, before the relay's own runs: the exchange has no queue bound yet, so
# the broker (on these same two cores; on its own machine in production) only routes and drops
run sign_up_events_off -t2 -c32 -d"${DURATION}s" -s bench/lua/sign_up.lua "$BASE"
restart_with USERS__EVENTS__AMQP_URL=$AMQP USERS__EVENTS__EXCHANGE=$EXCHANGE
for _ in $(seq 1 600); do [ "$(unpublished)" = 0 ] && break; sleep 0.1; done
# turning publishing on first drains every event the earlier scenarios wrote (thousands, each then
# marked published): vacuumed here as autovacuum would, so that the steady state is measured and not
# autovacuum cleaning up the one-off backlog during the next run
psql -q "$PGURL/$DB" -c "vacuum analyze events" >/dev/null
wrk -t2 -c32 -d3s -s bench/lua/me_many.lua "$BASE" >/dev/null 2>&1 || true
HEADER=Authorization run get_me_events_on -t2 -c32 -d"${DURATION}s" -s bench/lua/me_many.lua "$BASE"
run sign_up_events_on -t2 -c32 -d"${DURATION}s" -s bench/lua/sign_up.lua "$BASE"
for _ in $(seq 1 600); do [ "$(unpublished)" = 0 ] && break; sleep 0.1; done
EVENTS_LEFT=$(unpublished)
restart_with
wrk -t2 -c32 -d3s -s bench/lua/me_many.lua "$BASE" >/dev/null 2>&1 || true
HEADER=Authorization run get_me_events_off -t2 -c32 -d"${DURATION}s" -s bench/lua/me_many.lua "$BASE"
run sign_up_events_off_after -t2 -c32 -d"${DURATION}s" -s bench/lua/sign_up.lua "$BASE"
# the relay's throughput: a stored queue bound, a plain publisher-confirms loop right before and after
"$CEILING" setup "$AMQP" "$EXCHANGE"
Q1=$(ceiling)
restart_with USERS__EVENTS__AMQP_URL=$AMQP USERS__EVENTS__EXCHANGE=$EXCHANGE
for _ in $(seq 1 600); do [ "$(unpublished)" = 0 ] && break; sleep 0.1; done
psql -q "$PGURL/$DB" -c "insert into events (id, type, actor, user_id, data)
  select gen_random_uuid(), 'user.created', 'system', gen_random_uuid(),
         jsonb_build_object('user', jsonb_build_object('id', gen_random_uuid(), 'email', 'relay' || g || '@bench.example',
           'first_name', 'Relay', 'last_name', null, 'middle_name', null, 'phone', null, 'role', 'methodist',
           'status', 'active', 'email_verified', false, 'created_at', now(), 'updated_at', now(),
           'deleted_at', null, 'linked_accounts', '[]'::jsonb))
  from generate_series(1, 20000) g; select pg_notify('events_inserted', '')" >/dev/null
RELAY_START=$(date +%s%N)
for _ in $(seq 1 1200); do [ "$(unpublished)" = 0 ] && break; sleep 0.05; done
RELAY_MS=$(( ($(date +%s%N) - RELAY_START) / 1000000 ))
RELAY_LEFT=$(unpublished)
RELAY_RATE=$(awk -v n=$((20000 - RELAY_LEFT)) -v ms="$RELAY_MS" 'BEGIN { printf "%.1f", (ms > 0 ? n * 1000 / ms : 0) }')
Q2=$(ceiling)
echo "   relay: $((20000 - RELAY_LEFT)) in $RELAY_MS ms ($RELAY_RATE/s); ceiling $Q1, $Q2"
"$CEILING" teardown "$AMQP" "$EXCHANGE" || true
restart_with

echo "== login with the per-IP budgets in Redis, beside in-process ones (run right before)"
run login_budgets_in_process -t2 -c32 -d"${DURATION}s" -s bench/lua/post_json.lua "$BASE"
restart_with USERS__RATE_LIMIT__REDIS_URL=redis://127.0.0.1:6379/0 USERS__RATE_LIMIT__REDIS_PREFIX=bench:$$:
wrk -t2 -c8 -d2s -s bench/lua/post_json.lua "$BASE" >/dev/null 2>&1 || true
run login_budgets_in_redis -t2 -c32 -d"${DURATION}s" -s bench/lua/post_json.lua "$BASE"
REDIS_ERRORS=$(curl -fs "$BASE/metrics" | awk '/^rate_limit_backend_errors_total / {print $2}')
restart_with

echo "== GET me and login through PgBouncer in transaction mode, beside direct (run right before)"
PGB_PORT=$((PORT + 3))
PGB_DIR=$(mktemp -d)
cat > "$PGB_DIR/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=5432 user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 16
max_client_conn = 500
logfile = $PGB_DIR/pgbouncer.log
pidfile = $PGB_DIR/pgbouncer.pid
INI
chmod 777 "$PGB_DIR"
if [ "$(id -u)" = 0 ]; then runuser -u postgres -- pgbouncer -d "$PGB_DIR/pgbouncer.ini"; else pgbouncer -d "$PGB_DIR/pgbouncer.ini"; fi
PGBOUNCER_PID=$PGB_DIR/pgbouncer.pid
HEADER=Authorization run get_me_direct -t2 -c32 -d"${DURATION}s" -s bench/lua/me_many.lua "$BASE"
run login_direct -t2 -c32 -d"${DURATION}s" -s bench/lua/post_json.lua "$BASE"
restart_with USERS__DATABASE__URL=postgres://postgres@127.0.0.1:$PGB_PORT/$DB USERS__DATABASE__PGBOUNCER=true USERS__DATABASE__MIGRATE_URL=$PGURL/$DB
wrk -t2 -c32 -d3s -s bench/lua/me_many.lua "$BASE" >/dev/null 2>&1 || true
HEADER=Authorization run get_me_pgbouncer -t2 -c32 -d"${DURATION}s" -s bench/lua/me_many.lua "$BASE"
run login_pgbouncer -t2 -c32 -d"${DURATION}s" -s bench/lua/post_json.lua "$BASE"
restart_with
kill "$(cat "$PGBOUNCER_PID")" 2>/dev/null || true; PGBOUNCER_PID=""

echo "== /health/live during a 256-connection login flood"
MARK=$(rss_mark)
wrk -t2 -c256 --timeout 60s -d"$((DURATION + 4))s" -s bench/lua/post_json.lua "$BASE" > "$OUT/login_flood.txt" 2>&1 &
FLOOD=$!
sleep 2
wrk --latency -t1 -c4 -d"${DURATION}s" "$BASE/health/live" > "$OUT/health_during_flood.txt" 2>&1 || true
wait "$FLOOD" || true
FLOOD_RSS=$(rss_peak_since "$MARK")
ROWS+=("$(row login_flood_256 "$OUT/login_flood.txt" "$FLOOD_RSS")")
ROWS+=("$(row health_live_during_flood "$OUT/health_during_flood.txt" "$FLOOD_RSS")")

echo "== /health/live during a hang-up flood (300 clients send a login and close, 20 s)"
MARK=$(rss_mark)
# the attacker's CPU is not the service's: the flood runs at a lower priority on the shared cores
nice -n 10 python3 bench/hangup.py 127.0.0.1 "$PORT" 300 20 > "$OUT/hangups.txt" 2>&1 &
HANGUPS=$!
sleep 2
wrk --latency -t1 -c4 -d15s "$BASE/health/live" > "$OUT/health_during_hangups.txt" 2>&1 || true
wait "$HANGUPS" || true
HANGUP_RSS=$(rss_peak_since "$MARK")
HANGUP_COUNT=$(tail -n1 "$OUT/hangups.txt")
ROWS+=("| hangup_flood_300 | $(awk -v n="$HANGUP_COUNT" 'BEGIN { printf "%.2f", n / 20 }') | ? | ? | $HANGUP_COUNT | 0 | 0 | $HANGUP_RSS |")
ROWS+=("$(row health_live_during_hangups "$OUT/health_during_hangups.txt" "$HANGUP_RSS")")

read -r TICKS1 STEAL1 < <(cpu_ticks)
STEAL_PCT=$(awk -v s=$((STEAL1 - STEAL0)) -v t=$((TICKS1 - TICKS0)) 'BEGIN { printf "%.1f", (t > 0 ? 100 * s / t : 0) }')
PGTPS=$(mean "$PG1" "$PG2")
read -r F1 R1 <<< "$A1"; read -r F2 R2 <<< "$A2"; read -r F3 R3 <<< "$A3"
FRESH_LOGIN=$(mean "$F1" "$F2"); FRESH_SIGNUP=$(mean "$F2" "$F3")
REUSED_LOGIN=$(mean "$R1" "$R2"); REUSED_SIGNUP=$(mean "$R2" "$R3")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
rps_of() { awk '/Requests\/sec/ {print $2}' "$OUT/$1.txt"; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# MODE: the median of (MODE ÷ plain) over the rounds, then each round's
round_ratio() {
  local each
  each=$(awk -v m="$1" '$1 == "plain" { p[$2] = $3 } $1 == m { x[$2] = $3 } END { for (r in x) if (p[r] > 0) printf "%.2f\n", x[r] / p[r] }' "$OUT/rounds.txt" | sort -g)
  echo "$(echo "$each" | median) ($(echo "$each" | paste -sd' ' | sed 's/ /, /g'))"
}
# what an otlp_sink printed when it stopped: "exports, body bytes"
sink_received() { sed -n 's/^OTLP_EXPORTS=\([0-9]*\) OTLP_BYTES=\([0-9]*\)/\1, \2/p' "$1"; }
round_cpu() { awk -v m="$1" '$1 == m && $5 > 0 { printf "%.1f\n", $4 * 10000 / $5 }' "$OUT/rounds.txt" | median; }
LOGIN_RPS=$(rps_of login); SIGNUP_RPS=$(rps_of sign_up); ME_RPS=$(rps_of get_me_bearer)
PEAK_RSS=$(sort -n "$OUT/rss.samples" | tail -n1 | awk '{printf "%.1f", $1/1024}')
HEALTH_P99=$(awk '$1=="99%" {print $2}' "$OUT/health_during_flood.txt")

{
  echo "# Benchmark results"
  echo
  echo "Run: $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB,"
  echo "CPU steal (time the VM's cores were taken by other guests) $STEAL_PCT % over the run;"
  echo "\`bash bench/run.sh\` (wrk, ${DURATION}s per scenario, release build, fresh database on the local PostgreSQL)."
  echo
  echo "| scenario | req/s | p50 | p99 | requests | socket errors | non-2xx | peak RSS (MiB) |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "## Ceilings measured in the same run"
  echo
  echo "| ceiling | value |"
  echo "|---|---|"
  echo "| argon2id hashes/s, 2 threads, configured parameters, fresh buffer per hash (the crate's \`hash_password\`): before login, between login and sign_up, after sign_up | $F1, $F2, $F3 |"
  echo "| the same with a reused buffer (as the service hashes) | $R1, $R2, $R3 |"
  echo "| pgbench -S -c16 -j2 TPS (scale 10, TCP): before and after the GET me scenarios | $PG1, $PG2 |"
  echo "| login/s ÷ hash/s, fresh buffer (mean of the two around it: $FRESH_LOGIN) | $(ratio "$LOGIN_RPS" "$FRESH_LOGIN") |"
  echo "| login/s ÷ hash/s, reused buffer (mean: $REUSED_LOGIN) | $(ratio "$LOGIN_RPS" "$REUSED_LOGIN") |"
  echo "| sign_up/s ÷ hash/s, fresh buffer (mean: $FRESH_SIGNUP) | $(ratio "$SIGNUP_RPS" "$FRESH_SIGNUP") |"
  echo "| sign_up/s ÷ hash/s, reused buffer (mean: $REUSED_SIGNUP) | $(ratio "$SIGNUP_RPS" "$REUSED_SIGNUP") |"
  echo "| GET me/s (Bearer) ÷ pgbench TPS (mean: $PGTPS) | $(ratio "$ME_RPS" "$PGTPS") |"
  echo "| GET me with /metrics scraped each second ÷ plain GET me, side by side: median of $SLICES turns of ${SLICE_SECS} s (each turn's, sorted) | $(round_ratio scraped) |"
  echo "| GET me with traces exported ÷ plain GET me, the same | $(round_ratio traced) |"
  echo "| what the local OTLP sink received in those rounds: exports, body bytes | $(sink_received "$OUT/otlp_sink.txt") |"
  echo "| GET me with the trace collector down ÷ plain GET me, the same | $(round_ratio down) |"
  echo "| GET me with a collector answering each export after 2 s ÷ plain GET me, the same | $(round_ratio slow) |"
  echo "| GET me with a collector answering 503 ÷ plain GET me, the same | $(round_ratio failing) |"
  echo "| what the slow and the failing collector received: exports, body bytes | $(sink_received "$OUT/otlp_sink.slow.txt"); $(sink_received "$OUT/otlp_sink.failing.txt") |"
  echo "| service CPU per GET me, µs, median of the turns: plain, scraped, traced, collector down, slow, failing | $(round_cpu plain), $(round_cpu scraped), $(round_cpu traced), $(round_cpu down), $(round_cpu slow), $(round_cpu failing) |"
  echo "| non-2xx answers in all those turns (each must be 0) | $(awk '{ n += $6 } END { print n + 0 }' "$OUT/rounds.txt") |"
  QMEAN=$(mean "$Q1" "$Q2")
  echo "| RabbitMQ publisher-confirms loop, messages/s (1 000 in flight, persistent, a stored queue bound): before and after the relay | $Q1, $Q2 |"
  echo "| relay: 20 000 unpublished events until all acknowledged, events/s ÷ that ceiling (mean: $QMEAN) | $RELAY_RATE ÷ $QMEAN = $(ratio "$RELAY_RATE" "$QMEAN") |"
  ME_OFF=$(mean "$(rps_of get_me_plain_again)" "$(rps_of get_me_events_off)")
  SIGNUP_OFF=$(mean "$(rps_of sign_up_events_off)" "$(rps_of sign_up_events_off_after)")
  echo "| GET me with publishing on ÷ off (mean of the off runs right before and after: $ME_OFF; no queue bound: the broker routes and drops) | $(ratio "$(rps_of get_me_events_on)" "$ME_OFF") |"
  echo "| sign_up with publishing on ÷ off (mean of the off runs before and after: $SIGNUP_OFF; events left unpublished after: $EVENTS_LEFT; no queue bound) | $(ratio "$(rps_of sign_up_events_on)" "$SIGNUP_OFF") |"
  echo "| GET me/notifications (200 each, a page of 20) ÷ GET me (Bearer, run right before) | $(ratio "$(rps_of notifications_list)" "$(rps_of get_me_before_inbox)") |"
  echo "| the same page read from the database every time (a cursor page, never kept) ÷ GET me (Bearer, run right before the inbox) | $(ratio "$(rps_of notifications_list_read)" "$(rps_of get_me_before_inbox)") |"
  echo "| notification fan-out: $(fan STREAMS_OPENED) streams over 256 users (each notification reaches its user's ~8 streams), 200 created a second for 15 s through the server route: deliveries received / expected, streams still open at the end | $(fan DELIVERIES_RECEIVED) / $(fan DELIVERIES_EXPECTED), $(fan STREAMS_STILL_OPEN) open |"
  echo "| the fan-out's delivery latency from the create call's answer, p50 / p99 | $(fan LATENCY_P50_MS) ms / $(fan LATENCY_P99_MS) ms |"
  echo "| the service's peak RSS with the streams open | $FANOUT_RSS MiB |"
  echo "| GET me through PgBouncer (transaction mode, database.pgbouncer) ÷ GET me direct (run right before) | $(ratio "$(rps_of get_me_pgbouncer)" "$(rps_of get_me_direct)") |"
  echo "| login through PgBouncer ÷ login direct (run right before) | $(ratio "$(rps_of login_pgbouncer)" "$(rps_of login_direct)") |"
  echo "| login with budgets in Redis ÷ login with in-process budgets (run right before; Redis errors during the run: ${REDIS_ERRORS:-?}) | $(ratio "$(rps_of login_budgets_in_redis)" "$(rps_of login_budgets_in_process)") |"
  echo "| start-up to ready (migrated database) | ${READY_MS} ms |"
  echo "| /health/live p99 during the login flood | $HEALTH_P99 |"
  echo "| courier: 5 000 queued messages delivered to a local SMTP sink | $COURIER_SENT in $COURIER_MS ms: $COURIER_RATE messages/s |"
  echo "| forgot p50, known ÷ unknown email | $(awk -v a="$(awk '$1=="50%" {print $2}' "$OUT/forgot_known.txt")" -v b="$(awk '$1=="50%" {print $2}' "$OUT/forgot_unknown.txt")" 'function ms(x) { if (x ~ /us$/) return x / 1000; if (x ~ /ms$/) return x + 0; return x * 1000 } BEGIN { if (ms(b) > 0) printf "%.2f", ms(a) / ms(b); else print "n/a" }') |"
  echo "| /health/live p99 during the hang-up flood ($HANGUP_COUNT hang-ups in 20 s) | $(awk '$1=="99%" {print $2}' "$OUT/health_during_hangups.txt") |"
  echo "| peak RSS over the whole run | $PEAK_RSS MiB |"
  echo
  echo "Targets: GET me ≥ 0.50 of pgbench TPS; login and sign_up ≥ 0.90 of the argon2 rate; /health/live"
  echo "p99 < 10 ms during the flood; peak RSS < 150 MiB; zero errors where success is expected"
  echo "(the flood row's non-2xx are none: every login there is valid, and auth.hash_queue_max is 300 here);"
  echo "start-up < 1 s; admin search"
  echo "(PUT users/any, a substring of one user's email, 16 connections) p99 < 50 ms and ≥ 2000 req/s at"
  echo "100 000 users, p99 < 100 ms at 1 000 000; during the hang-up flood (its row's req/s is hang-ups a"
  echo "second) peak RSS < 150 MiB and /health/live p99 < 10 ms; forgot p50s for a known and an unknown"
  echo "email within 10 % of each other; the courier ≥ 500 messages/s; GET me with /metrics scraped, with"
  echo "traces exported and with the collector down, slow or failing each within 5 % of plain GET me; the relay ≥ 0.70 of"
  echo "the publisher-confirms ceiling; GET me and sign_up with publishing on within 5 % of off; the inbox"
  echo "≥ 0.50 of GET me; the fan-out's p99 < 250 ms with no stream dropped and RSS < 150 MiB; login with"
  echo "Redis budgets within 5 % of in-process; GET me through PgBouncer ≥ 0.70 of direct."
  echo
  echo "Where the misses come from, with a profile: [PROFILE.md](PROFILE.md)."
} > "$RESULTS"
cat "$RESULTS"
