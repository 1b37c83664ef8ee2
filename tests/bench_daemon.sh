#!/bin/sh
# make bench, part 3: load test of the scoring daemon (issue 5, section 4).
# Starts build/anodmd on 127.0.0.1 (a free port, a score log in a temporary directory)
# with a Fashion-MNIST bundle and drives it with wrk, DURATION seconds a run:
#   JSON, POST /v1/score: one real test image per request ({"sample": [...]}) and 64 per
#     request ({"samples": [...]}), at 1, 16 and 64 connections (CONNS), and one
#     rate-limited single-sample run at half the peak single-sample rate (the p99 target);
#   binary, POST /v2/models/fashion/infer with the Open Inference Protocol's binary tensor
#     extension (a JSON header, then the raw little-endian FP32 tensor; binary outputs):
#     the same three kinds of run (BIN_CONNS); and UINT8 tensors, 1 and 64 images a
#     request (U8_CONNS).
# Before timing, each binary body is checked to be answered 200 with /v1's scores for the
# same images (tests/check_wrk_bodies.py). Reports requests/s, samples/s, p50/p99 latency,
# errors and the daemon's peak RSS (VmHWM) in one table, then the issue's targets, each met
# or missed. Loopback only; every run is bounded (wrk -d, the daemon killed on any exit).
#
# Installs nothing: wrk and the check's Python packages come from `make bench-deps`.
# Settings (environment): MODEL (bundle; default models/fashion-trouser.anodm, else a quick
# 2-epoch bundle built once into /tmp/anodm-bench.anodm), DURATION (10), WRK_THREADS (2),
# CONNS ("1 16 64"), BIN_CONNS (CONNS), U8_CONNS ("64"; "" for no UINT8 runs), HALF_CONNS
# (16), DAEMON_ARGS (extra anodmd flags), FMNIST, PYTHON.
set -eu
ANODM_BIN=${ANODM_BIN:-build/anodm}
ANODMD_BIN=${ANODMD_BIN:-build/anodmd}
PYTHON=${PYTHON:-/usr/bin/python3}
FMNIST=${FMNIST:-/usr/share/datasets/fashion-mnist}
DURATION=${DURATION:-10}
WRK_THREADS=${WRK_THREADS:-2}
CONNS=${CONNS:-1 16 64}
BIN_CONNS=${BIN_CONNS:-$CONNS}
U8_CONNS=${U8_CONNS-64}
HALF_CONNS=${HALF_CONNS:-16}
DAEMON_ARGS=${DAEMON_ARGS:-}
here=$(dirname "$0")
. "$here/bench_lib.sh"

command -v wrk >/dev/null 2>&1 || { echo "bench_daemon: wrk not found (make bench-deps installs it)" >&2; exit 1; }
command -v curl >/dev/null 2>&1 || { echo "bench_daemon: curl not found" >&2; exit 1; }
[ -x "$ANODMD_BIN" ] || { echo "bench_daemon: $ANODMD_BIN not built (make all)" >&2; exit 1; }

echo "== anodmd load test: wrk against POST /v1/score (JSON) and POST /v2/models/fashion/infer" \
     "(binary tensors) on 127.0.0.1, ${DURATION} s a run, $WRK_THREADS wrk threads"
bench_machine

# The bundle.
if [ -n "${MODEL:-}" ]; then
    echo "model: $MODEL (from \$MODEL)"
elif [ -f models/fashion-trouser.anodm ]; then
    MODEL=models/fashion-trouser.anodm
    echo "model: $MODEL"
else
    MODEL=/tmp/anodm-bench.anodm
    if [ -f "$MODEL" ] && "$ANODM_BIN" inspect "$MODEL" >/dev/null 2>&1; then
        echo "model: no models/fashion-trouser.anodm; reusing the quick bundle $MODEL built by an earlier run (delete it to rebuild)"
    else
        echo "model: no models/fashion-trouser.anodm; building a quick one (2 epochs, 10000-point map) into $MODEL, a few minutes"
        "$ANODM_BIN" train --data "$FMNIST" --exclude-class 1 --epochs 2 --n-ref 10000 --out "$MODEL"
    fi
fi
n_ref=$("$ANODM_BIN" inspect --json "$MODEL" | sed -n 's/.*"n_ref": *\([0-9]*\).*/\1/p' | head -n 1)
echo "model: map of ${n_ref:-?} reference points"

tmp=$(mktemp -d /tmp/anodm-bench-daemon.XXXXXX)
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Request bodies: the first Fashion-MNIST test image, and the first 64; JSON and binary.
"$PYTHON" "$here/gen_wrk_bodies.py" "$FMNIST" "$tmp"

# The daemon: built-in defaults (those of etc/anodmd.conf) but for model, port and log.
: >"$tmp/anodmd.log"
# shellcheck disable=SC2086
"$ANODMD_BIN" --model "fashion=$MODEL" --bind 127.0.0.1 --port 0 --db "$tmp/scores.db" \
    $DAEMON_ARGS 2>"$tmp/anodmd.log" &
pid=$!
port=""
i=0
while [ $i -lt 1200 ]; do                     # 120 s for the bundle to load
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$tmp/anodmd.log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "bench_daemon: anodmd exited:" >&2; cat "$tmp/anodmd.log" >&2; exit 1; }
    sleep 0.1; i=$((i + 1))
done
[ -n "$port" ] || { echo "bench_daemon: anodmd did not start listening" >&2; cat "$tmp/anodmd.log" >&2; exit 1; }
base=http://127.0.0.1:$port
i=0
until curl -sf -o /dev/null "$base/readyz"; do
    i=$((i + 1))
    [ $i -lt 300 ] || { echo "bench_daemon: /readyz never turned 200" >&2; cat "$tmp/anodmd.log" >&2; exit 1; }
    sleep 0.1
done
hwm_kb() { awk '$1 == "VmHWM:" { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$pid/status"; }
# Reset the peak so that each run reports its own (Linux >= 4.0; else it stays cumulative).
reset_hwm() { echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; }
start_kb=$(hwm_kb)
echo "anodmd: pid $pid, $base, ready; peak RSS after loading $(awk -v k="$start_kb" 'BEGIN { printf "%.1f", k / 1024 }') MB"
echo "anodmd flags: --model fashion=$MODEL --bind 127.0.0.1 --port 0 --db TMP/scores.db $DAEMON_ARGS (threads, workers, batch window: defaults)"

# The binary bodies must be answered, and with the right scores, before they are timed.
"$PYTHON" "$here/check_wrk_bodies.py" "$base" "$tmp" single-fp32 batch64-fp32 single-u8 batch64-u8 || {
    echo "bench_daemon: the binary bodies are not answered as /v1 answers the same images" >&2; exit 1; }

# Wait (at most 30 s) until anodmd is idle: requests that a finished wrk run left queued
# are still being scored and would load the next run. Idle: < 20 ms CPU in 0.5 s.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
settle() {
    n=0; a=$(cpu_ticks)
    while [ $n -lt 60 ]; do
        sleep 0.5; b=$(cpu_ticks)
        [ $((b - a)) -lt 2 ] && return 0
        a=$b; n=$((n + 1))
    done
    echo "bench_daemon: anodmd still busy 30 s after a run; going on" >&2
}

# One wrk run: run NAME CONNS BODY SAMPLES_PER_REQUEST [DELAY_MS] -> a line in $tmp/rows.
# BODY is TMP/NAME.json (POST /v1/score) or TMP/NAME.bin, a binary infer request whose
# header length is in TMP/NAME.hlen (POST /v2/models/fashion/infer).
run() {
    name=$1 c=$2 body=$3 per=$4 delay=${5:-0}
    t=$WRK_THREADS; [ "$c" -lt "$t" ] && t=$c
    case $body in
        *.bin) url=$base/v2/models/fashion/infer; hlen=$(cat "${body%.bin}.hlen") ;;
        *) url=$base/v1/score; hlen="" ;;
    esac
    settle
    reset_hwm
    t0=$(cpu_ticks)
    # shellcheck disable=SC2086
    wrk -t "$t" -c "$c" -d "${DURATION}s" --timeout 5s --latency -s "$here/wrk_score.lua" \
        "$url" -- "$body" "$delay" $hlen >"$tmp/wrk-$name-$c.txt" 2>&1 || {
        echo "bench_daemon: wrk failed:" >&2; cat "$tmp/wrk-$name-$c.txt" >&2; exit 1; }
    stats=$(grep '^WRKSTATS' "$tmp/wrk-$name-$c.txt") || {
        echo "bench_daemon: no summary from wrk:" >&2; cat "$tmp/wrk-$name-$c.txt" >&2; exit 1; }
    echo "$name $c $per $(hwm_kb) $stats cpu_ticks=$(($(cpu_ticks) - t0)) delay_ms=$delay" >>"$tmp/rows"
}
# Row fields: name conns per hwm_kb WRKSTATS requests= duration_us= p50_us= p99_us= max_us=
#             status= connect= read= write= timeout= cpu_ticks= (anodmd's, during the run)
#             delay_ms= (the paced runs' mean pause per connection; 0 for the others)
# Names: single, batch64 (JSON) and single-fp32, batch64-fp32, single-u8, batch64-u8
# (binary); a paced run is its kind's name and "@half".
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
row_awk='{ for (i = 5; i <= NF; i++) if (split($i, kv, "=") == 2) v[kv[1]] = kv[2]
           rps = v["requests"] / (v["duration_us"] / 1e6)
           cores = v["cpu_ticks"] / '"$hz"' / (v["duration_us"] / 1e6)
           sock = v["connect"] + v["read"] + v["write"] + v["timeout"] }'

# p99 at half the peak single-sample rate: paced NAME BODY runs HALF_CONNS connections of
# BODY, each pausing so that together they offer about half the best requests/s measured
# for NAME above.
paced() {
    peak=$(awk -v n="$1" "$row_awk"' $1 == n && rps > best { best = rps } END { printf "%.1f", best }' "$tmp/rows")
    svc_ms=$(awk -v n="$1" "$row_awk"' $1 == n && $2 == 1 { printf "%.3f", v["p50_us"] / 1000 }' "$tmp/rows")
    delay_ms=$(awk -v p="$peak" -v c="$HALF_CONNS" -v s="${svc_ms:-0}" \
        'BEGIN { d = (p > 0) ? 1000 * c / (p / 2) - s : 0; if (d < 1) d = 1; printf "%.1f", d }')
    run "$1@half" "$HALF_CONNS" "$2" 1 "$delay_ms"
}

: >"$tmp/rows"
for c in $CONNS; do run single "$c" "$tmp/single.json" 1; done
paced single "$tmp/single.json"
for c in $CONNS; do run batch64 "$c" "$tmp/batch64.json" 64; done
for c in $BIN_CONNS; do run single-fp32 "$c" "$tmp/single-fp32.bin" 1; done
[ -n "$BIN_CONNS" ] && paced single-fp32 "$tmp/single-fp32.bin"
for c in $BIN_CONNS; do run batch64-fp32 "$c" "$tmp/batch64-fp32.bin" 64; done
for c in $U8_CONNS; do run single-u8 "$c" "$tmp/single-u8.bin" 1; done
for c in $U8_CONNS; do run batch64-u8 "$c" "$tmp/batch64-u8.bin" 64; done
settle

# Stop: SIGTERM, drain, exit 0 (killed after 30 s).
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 "$pid" 2>/dev/null && { echo "bench_daemon: anodmd still running 30 s after SIGTERM; killed" >&2; kill -KILL "$pid"; }
rc=0; wait "$pid" || rc=$?
pid=""
logged=$(sed -n 's/^anodmd: log closed: \([0-9]*\) rows in \([0-9]*\) transactions.*/\1 \2/p' "$tmp/anodmd.log")

echo
echo "| request | conns | requests/s | samples/s | p50 ms | p99 ms | non-2xx | socket errors | peak RSS MB | anodmd CPU (cores) | samples per CPU-s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
awk "$row_awk"'{
    name = ($1 ~ /^batch64/) ? "64 samples" : "1 sample"
    name = name (($1 ~ /-fp32/) ? ", FP32 binary" : ($1 ~ /-u8/) ? ", UINT8 binary" : ", JSON")
    if ($1 ~ /@half$/) name = name ", paced (" v["delay_ms"] " ms/conn)"
    printf "| %s | %d | %.0f | %.0f | %.2f | %.2f | %d | %d | %.1f | %.2f | %.0f |\n", name, $2, rps, rps * $3,
           v["p50_us"] / 1000, v["p99_us"] / 1000, v["status"], sock, $4 / 1024, cores,
           (cores > 0) ? rps * $3 / cores : 0 }' "$tmp/rows"
echo
echo "wrk --latency, ${DURATION} s a run, $WRK_THREADS threads (1 for 1 connection); wrk shares the cores with anodmd."
echo "JSON: POST /v1/score; binary: POST /v2/models/fashion/infer, the input tensor's bytes after a JSON header, outputs as binary data."
echo "anodmd CPU: its user+system time during the run / run time; samples per CPU-s = samples/s / that."
awk "$row_awk"' sock > 0 { printf "socket errors, %s at %d connections: connect %d, read %d, write %d, timeout %d (wrk --timeout 5s)\n",
    $1, $2, v["connect"], v["read"], v["write"], v["timeout"] }' "$tmp/rows"
echo "peak RSS: VmHWM of anodmd, reset before each run; $(awk -v k="$start_kb" 'BEGIN { printf "%.1f", k / 1024 }') MB after loading."
if [ -n "$logged" ]; then
    echo "$logged" | awk '{ printf "score log: %d rows committed in %d transactions (%.1f rows each)\n", $1, $2, $2 ? $1 / $2 : 0 }'
fi
echo "anodmd: SIGTERM -> exit $rc"

echo
echo "targets (issue 5, restated by issue 17 for JSON and binary; on 2 cores):"
awk -v start_kb="$start_kb" -v n_ref="${n_ref:-0}" -v half="$HALF_CONNS" "$row_awk"'
    function verdict(ok) { return ok ? "met" : "MISSED" }
    function line(what, x, unit, ok, note) {
        printf "  %-50s %8s %-2s %s%s\n", what, sprintf(unit == "ms" ? "%.2f" : unit == "MB" ? "%.1f" : "%.0f", x),
               unit, ok, note
    }
    { fmt = ($1 ~ /-fp32/) ? "FP32" : ($1 ~ /-u8/) ? "UINT8" : "JSON" }
    $1 !~ /@half$/ && $3 == 1 && rps > single[fmt] { single[fmt] = rps }
    $3 == 64 && rps * $3 > batch[fmt] { batch[fmt] = rps * $3 }
    $1 ~ /@half$/ { h_rps[fmt] = rps; h_p99[fmt] = v["p99_us"] / 1000 }
    { if ($4 > hwm) hwm = $4; errs += v["status"] + sock }
    END {
        if (start_kb > hwm) hwm = start_kb
        split("JSON FP32 UINT8", f, " ")
        for (i = 1; i <= 3; i++) if (f[i] in single)
            line("single-sample scores/s >= 5000, " f[i] ":", single[f[i]], "", verdict(single[f[i]] >= 5000), "")
        for (i = 1; i <= 3; i++) if (f[i] in batch)
            line("samples/s in 64-sample requests >= 20000, " f[i] ":", batch[f[i]], "", verdict(batch[f[i]] >= 20000), "")
        for (i = 2; i <= 3; i++) if ((f[i] in batch) && ("JSON" in batch))
            line("  and " f[i] " binary above JSON (" sprintf("%.0f", batch["JSON"]) "):", batch[f[i]], "",
                 verdict(batch[f[i]] > batch["JSON"]), sprintf(" (x%.2f)", batch[f[i]] / batch["JSON"]))
        for (i = 1; i <= 2; i++) if (f[i] in h_p99)
            line("p99 < 5 ms at half the peak rate, " f[i] ":", h_p99[f[i]], "ms", verdict(h_p99[f[i]] < 5),
                 sprintf(" (%.0f req/s offered by %d paced connections; half the peak is %.0f)",
                         h_rps[f[i]], half, single[f[i]] / 2))
        line("peak RSS < 150 MB, 10000-point map:", hwm / 1024, "MB",
             (n_ref == 10000) ? verdict(hwm / 1024 < 150) : "n/a", sprintf(" (this map: %d points)", n_ref))
        line("no errors (non-2xx + socket, all runs):", errs, "", verdict(errs == 0), "")
    }' "$tmp/rows"

if [ "$rc" -ne 0 ]; then
    echo "bench_daemon: anodmd exited $rc after SIGTERM, not 0:" >&2
    tail -20 "$tmp/anodmd.log" >&2
    exit 1
fi

# GET /v1/stats on a big log: anodmd's index reads against the queries it ran before log
# schema 3 (tests/bench_stats.py; STATS_ROWS rows, default 1000000).
echo "== GET /v1/stats on a log of ${STATS_ROWS:-1000000} rows"
"$PYTHON" tests/bench_stats.py "$ANODMD_BIN" "$MODEL" "${STATS_ROWS:-1000000}"
