#!/bin/sh
# What the sink and the merged history cost (issue 16, section 1; docs/DEPLOY.md).
# Starts its own PostgreSQL (Debian's initdb and pg_ctl, in a temporary directory, on a
# Unix socket only, as nobody when run as root; fsync on, as deployed) and anodmd on
# 127.0.0.1, and measures with wrk (POST /v1/score, one Fashion-MNIST image a request
# and 64 a request, CONNS connections, DURATION s each):
#   1. scoring without a sink and with one: requests/s, samples/s, p50/p99, anodmd's CPU,
#      the sink's largest backlog during the run and how long it took to drain after;
#   2. the shipping rate: PostgreSQL stopped for a run of 64-sample requests, started
#      again, the backlog timed until it is 0;
#   3. PostgreSQL's size per row (table and indexes);
#   4. reads: GET /v1/scores pages and GET /v1/stats from the merged history against the
#      same from the local log, median of 5.
# Every run is bounded (wrk -d; processes killed and the directory removed on any exit).
# Settings (environment): MODEL (default: a small bundle built once into
# /tmp/anodm-bench-pgsink.anodm, about 20 s), DURATION (10), CONNS (16), FMNIST, PYTHON.
set -eu
ANODM_BIN=${ANODM_BIN:-build/anodm}
ANODMD_BIN=${ANODMD_BIN:-build/anodmd}
PYTHON=${PYTHON:-/usr/bin/python3}
FMNIST=${FMNIST:-/usr/share/datasets/fashion-mnist}
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
here=$(dirname "$0")
. "$here/bench_lib.sh"

for p in wrk curl psql initdb pg_ctl; do
    command -v $p >/dev/null 2>&1 || { echo "bench_pgsink: $p not found" >&2; exit 1; }
done
[ -x "$ANODMD_BIN" ] || { echo "bench_pgsink: $ANODMD_BIN not built (make all)" >&2; exit 1; }

echo "== anodmd's sink and merged history: costs; wrk ${DURATION} s a run, $CONNS connections"
bench_machine "$(postgres --version 2>/dev/null || pg_ctl --version)"

bench_small_model

tmp=$(mktemp -d /tmp/anodm-bench-pgsink.XXXXXX)
pid=""
as_pg=""
[ "$(id -u)" = 0 ] && as_pg="runuser -u nobody --"
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    [ -f "$tmp/pg/data/postmaster.pid" ] && $as_pg pg_ctl -D "$tmp/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# PostgreSQL.
mkdir -p "$tmp/pg"
if [ -n "$as_pg" ]; then chmod 711 "$tmp"; chown nobody "$tmp/pg"; fi
$as_pg initdb -D "$tmp/pg/data" -A trust -U anodm -E UTF8 --no-locale >"$tmp/initdb.log" 2>&1 ||
    { cat "$tmp/initdb.log" >&2; exit 1; }
pg_start() { $as_pg pg_ctl -D "$tmp/pg/data" -l "$tmp/pg/server.log" -w -t 60 \
                 -o "-c listen_addresses='' -k $tmp/pg" start >/dev/null; }
pg_stop() { $as_pg pg_ctl -D "$tmp/pg/data" -m fast -w -t 60 stop >/dev/null; }
pg_start
sql() { psql -h "$tmp/pg" -U anodm -d "$1" -Atqc "$2"; }
sql postgres "CREATE DATABASE bench"
url="postgresql:///bench?host=$tmp/pg&user=anodm"

"$PYTHON" "$here/gen_wrk_bodies.py" "$FMNIST" "$tmp"

hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
# Seconds until the backlog is 0 (at most 120).
drain_s() {
    t0=$(date +%s.%N); i=0
    while [ "$(metric anodmd_sink_backlog_rows)" != 0 ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
    awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

# run MODE BODY PER: one wrk run, a row into $tmp/rows; with a sink, the backlog sampled
# every 0.5 s meanwhile (its largest kept) and the time to drain it after.
run() {
    mode=$1 body=$2 per=$3
    : >"$tmp/backlog"
    if [ "$mode" = sink ]; then
        ( while kill -0 "$pid" 2>/dev/null; do metric anodmd_sink_backlog_rows >>"$tmp/backlog"; sleep 0.5; done ) &
        sampler=$!
    fi
    t0=$(cpu_ticks)
    wrk -t 2 -c "$CONNS" -d "${DURATION}s" --timeout 5s --latency -s "$here/wrk_score.lua" \
        "$base/v1/score" -- "$tmp/$body.json" >"$tmp/wrk.txt" 2>&1
    ticks=$(($(cpu_ticks) - t0))
    max=- drain=-
    if [ "$mode" = sink ]; then
        drain=$(drain_s)
        kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
        max=$(sort -n "$tmp/backlog" | tail -n 1)
    fi
    echo "$mode $per $ticks $max $drain $(grep '^WRKSTATS' "$tmp/wrk.txt")" >>"$tmp/rows"
}

: >"$tmp/rows"
anodmd local
run local single 1
run local batch64 64
stop
anodmd sink --sink "$url" --replica-id bench
run sink single 1
run sink batch64 64
echo
echo "| sink | request | requests/s | samples/s | p50 ms | p99 ms | anodmd CPU (cores) | samples per CPU-s | largest backlog (rows) | drained after (s) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
awk -v hz="$hz" '{ for (i = 6; i <= NF; i++) if (split($i, kv, "=") == 2) v[kv[1]] = kv[2]
    s = v["duration_us"] / 1e6; rps = v["requests"] / s; cores = $3 / hz / s
    printf "| %s | %d sample%s | %.0f | %.0f | %.2f | %.2f | %.2f | %.0f | %s | %s |\n",
        ($1 == "sink") ? "on" : "off", $2, ($2 > 1) ? "s" : "", rps, rps * $2, v["p50_us"] / 1000,
        v["p99_us"] / 1000, cores, (cores > 0) ? rps * $2 / cores : 0, $4, $5 }' "$tmp/rows"
grep -h 'status=[1-9]\|timeout=[1-9]' "$tmp/rows" && echo "(errors above)"

# 2. The shipping rate after an outage.
echo
pg_stop
before=$(metric anodmd_sink_backlog_rows)
wrk -t 2 -c "$CONNS" -d "${DURATION}s" --timeout 5s -s "$here/wrk_score.lua" \
    "$base/v1/score" -- "$tmp/batch64.json" >"$tmp/wrk-outage.txt" 2>&1
outage=$(grep '^WRKSTATS' "$tmp/wrk-outage.txt")
sleep 1                          # requests wrk left in flight, scored
rows=$(metric anodmd_sink_backlog_rows)
age=$(metric anodmd_sink_oldest_unshipped_seconds)
pg_start
# The backlog every 0.1 s: when it starts to fall (the sink reconnected: its backoff had
# reached up to 8 s) and when it is 0; anodmd's CPU in between is the sink's alone.
t0=$(date +%s.%N); t1=""; b1=$rows; c1=0; i=0
while [ $i -lt 1200 ]; do
    b=$(metric anodmd_sink_backlog_rows)
    if [ -z "$t1" ] && [ "$b" -lt "$rows" ]; then t1=$(date +%s.%N); c1=$(cpu_ticks); b1=$b; fi
    [ "$b" = 0 ] && break
    sleep 0.1; i=$((i + 1))
done
t2=$(date +%s.%N); c2=$(cpu_ticks)
echo "outage: PostgreSQL stopped for a ${DURATION} s run of 64-sample requests ($outage);"
echo "  backlog $before -> $rows rows, oldest unshipped ${age} s; PostgreSQL started:"
awk -v t0="$t0" -v t1="${t1:-$t0}" -v t2="$t2" -v b1="$b1" -v c="$((c2 - c1))" -v hz="$hz" 'BEGIN {
    printf "  shipping resumed after %.1f s (the backoff), the rest (%d rows) drained in %.1f s: %.0f rows/s;\n",
        t1 - t0, b1, t2 - t1, (t2 > t1) ? b1 / (t2 - t1) : 0
    printf "  anodmd CPU meanwhile %.2f s: %.1f us a row shipped\n", c / hz, (b1 > 0) ? c / hz / b1 * 1e6 : 0 }'
echo "  sink counters: rows $(metric anodmd_sink_rows_total), resent $(metric anodmd_sink_resent_rows_total), errors $(metric anodmd_sink_errors_total)"
stop

# 3. Size.
echo
sql bench "SELECT 'history: ' || count(*) || ' rows; table ' ||
           pg_size_pretty(pg_table_size('anodm_scores')) || ' (' || pg_table_size('anodm_scores') / count(*) ||
           ' B a row), indexes ' || pg_size_pretty(pg_indexes_size('anodm_scores')) || ' (' ||
           pg_indexes_size('anodm_scores') / count(*) || ' B a row)' FROM anodm_scores"
echo "local log (SQLite, the sink run's): $(stat -c %s "$tmp/sink.db") B + WAL for $(sql bench "SELECT count(*) FROM anodm_scores") rows shipped"

# 4. Reads: the merged history against the local log (the sink run's, which holds the
# same rows), 5 times each, the median; the history vacuumed first, as autovacuum leaves
# it soon after such a load (its visibility map set: index-only scans stay in the index).
echo
sql bench "VACUUM (ANALYZE) anodm_scores"
median_ms() {
    for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{time_total}\n' "$base$1"; done |
        sort -n | sed -n 3p | awk '{ printf "%.1f", $1 * 1000 }'
}
for mode in log history; do
    if [ $mode = history ]; then anodmd sink --history "$url"; else anodmd sink; fi
    curl -s -o /dev/null "$base/v1/scores?limit=1"     # the history's connection, made
    printf '%s' "$mode" >>"$tmp/reads"
    for q in "/v1/scores?since_id=0&limit=100" "/v1/scores?before_id=9223372036854775807&limit=100" \
             "/v1/scores?anomalies_only=true&model=fashion&before_id=9223372036854775807&limit=100" \
             "/v1/stats"; do
        printf ' %s' "$(median_ms "$q")" >>"$tmp/reads"
    done
    echo >>"$tmp/reads"
    stop
done
echo "| read from | first page, 100 rows (ms) | newest page (ms) | newest anomalies of a model (ms) | GET /v1/stats (ms) |"
echo "|---|---:|---:|---:|---:|"
awk '{ printf "| %s | %s | %s | %s | %s |\n", $1 == "log" ? "local log (SQLite)" : "merged history (PostgreSQL)", $2, $3, $4, $5 }' "$tmp/reads"
