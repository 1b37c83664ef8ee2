#!/bin/sh
# What KServe-compatible payload logging costs anodmd (docs/DEPLOY.md, "Payload logging").
# anodmd on 127.0.0.1 with its sink off, on (mode all: two events a request) and pointed at
# a port where nothing listens, under wrk (POST /v1/score, one Fashion-MNIST image a
# request and 64 a request, CONNS connections, DURATION s a run); off and on alternate,
# REPEAT times, since the machine is shared. The sink is HAProxy answering every POST 202
# at once (a CloudEvents receiver that costs the test little). Per run: requests/s,
# anodmd's CPU (utime + stime from /proc) per request, the sending threads' CPU per
# event sent (they name themselves anodmd-plog; what building an event costs the scoring
# threads is only in the total), and the events sent, failed and dropped (/metrics). Every run is bounded (wrk -d; processes killed on any exit).
# Settings (environment): MODEL (default: the bundle bench_pgsink.sh builds,
# /tmp/anodm-bench-pgsink.anodm, built here if missing), DURATION (8), CONNS (16),
# REPEAT (2), FMNIST, PYTHON.
set -eu
ANODM_BIN=${ANODM_BIN:-build/anodm}
ANODMD_BIN=${ANODMD_BIN:-build/anodmd}
PYTHON=${PYTHON:-/usr/bin/python3}
FMNIST=${FMNIST:-/usr/share/datasets/fashion-mnist}
DURATION=${DURATION:-8}
CONNS=${CONNS:-16}
REPEAT=${REPEAT:-2}
here=$(dirname "$0")
. "$here/bench_lib.sh"

for p in wrk curl haproxy; do
    command -v $p >/dev/null 2>&1 || { echo "bench_payload_log: $p not found" >&2; exit 1; }
done
[ -x "$ANODMD_BIN" ] || { echo "bench_payload_log: $ANODMD_BIN not built (make all)" >&2; exit 1; }

echo "== anodmd's payload log: costs; wrk ${DURATION} s a run, $CONNS connections, $REPEAT rounds"
bench_machine "$(haproxy -v | head -n 1)"

bench_small_model

tmp=$(mktemp -d /tmp/anodm-bench-plog.XXXXXX)
pid="" hap=""
cleanup() {
    for p in $pid $hap; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
sink_port=$(free_port)
dead_port=$(free_port)          # nothing listens there
cat >"$tmp/haproxy.cfg" <<CFG
global
    maxconn 1024
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend sink
    bind 127.0.0.1:$sink_port
    http-request return status 202
CFG
haproxy -f "$tmp/haproxy.cfg" -db >"$tmp/haproxy.log" 2>&1 &
hap=$!
sleep 0.5
kill -0 "$hap" 2>/dev/null || { cat "$tmp/haproxy.log" >&2; exit 1; }

"$PYTHON" "$here/gen_wrk_bodies.py" "$FMNIST" "$tmp"

events() { metric "anodmd_payload_log_events_total{result=\"$1\"}"; }
# The sending threads' CPU (they name themselves anodmd-plog); 0 without them.
plog_ticks() {
    n=0
    for t in /proc/$pid/task/*; do
        if [ "$(cat "$t/comm" 2>/dev/null)" = anodmd-plog ]; then
            n=$((n + $(awk '{ print $14 + $15 }' "$t/stat")))
        fi
    done
    echo $n
}
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)

# run LABEL BODY PER ARGS...: anodmd with ARGS, one wrk run, a row into $tmp/rows.
run() {
    label=$1 body=$2 per=$3; shift 3
    anodmd "$label-$body-$r" "$@"
    t0=$(cpu_ticks)
    wrk -t 2 -c "$CONNS" -d "${DURATION}s" --timeout 5s --latency -s "$here/wrk_score.lua" \
        "$base/v1/score" -- "$tmp/$body.json" >"$tmp/wrk.txt" 2>&1 ||
        { echo "run $label $body: wrk exited $?:"; tail -n 3 "$tmp/wrk.txt" "$tmp/$label-$body-$r.log"; } >&2
    ticks=$(($(cpu_ticks) - t0))
    sleep 0.5                    # the events of the last answers, sent
    if [ "$label" = off ]; then ev="- - -"; else ev="$(events sent) $(events failed) $(events dropped)"; fi
    echo "$label $per $ticks $(plog_ticks) $ev $(grep '^WRKSTATS' "$tmp/wrk.txt")" >>"$tmp/rows"
    stop
}

: >"$tmp/rows"
url="http://127.0.0.1:$sink_port/"
r=0
while [ $r -lt "$REPEAT" ]; do
    run off single 1
    run on single 1 --payload-log-url "$url"
    run off batch64 64
    run on batch64 64 --payload-log-url "$url"
    r=$((r + 1))
done
run down single 1 --payload-log-url "http://127.0.0.1:$dead_port/"
echo
echo "| payload log | request | requests/s | p50 ms | p99 ms | anodmd CPU (cores) | anodmd CPU per request (us) | sending threads' CPU per event sent (us) | events sent | failed | dropped |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
awk -v hz="$hz" '{ for (i = 8; i <= NF; i++) if (split($i, kv, "=") == 2) v[kv[1]] = kv[2]
    s = v["duration_us"] / 1e6; rps = v["requests"] / s; cores = $3 / hz / s
    printf "| %s | %d sample%s | %.0f | %.2f | %.2f | %.2f | %.0f | %s | %s | %s | %s |\n",
        $1 == "on" ? "on (all)" : $1 == "down" ? "on, sink down" : "off", $2, ($2 > 1) ? "s" : "",
        rps, v["p50_us"] / 1000, v["p99_us"] / 1000, cores,
        (v["requests"] > 0) ? $3 / hz / v["requests"] * 1e6 : 0,
        ($5 > 0) ? sprintf("%.1f", $4 / hz / $5 * 1e6) : "-", $5, $6, $7 }' "$tmp/rows"
grep -h 'status=[1-9]\|timeout=[1-9]' "$tmp/rows" && echo "(errors above)"
echo
echo "raw rows (label, samples a request, anodmd CPU ticks at $hz Hz, the sending threads', sent, failed, dropped, wrk):"
cat "$tmp/rows"
