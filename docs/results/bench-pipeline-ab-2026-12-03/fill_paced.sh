#!/bin/sh
# Paced single-sample FP32 requests after the log has grown, old against new anodmd:
#   sh docs/results/bench-pipeline-ab-2026-12-03/fill_paced.sh OLD_ANODMD NEW_ANODMD
# For each binary: a fresh log, 10 s of 64-sample JSON requests at 64 connections (the
# fill), then twice 10 s of single-sample FP32 requests from 16 connections each pausing
# 2.9 ms (tests/bench_daemon.sh's paced run at this machine's half peak); wrk's p50/p99.
# Bodies are made by tests/gen_wrk_bodies.py as tests/bench_daemon.sh makes them.
set -e
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 tests/gen_wrk_bodies.py /usr/share/datasets/fashion-mnist "$tmp" >/dev/null
for bin in "$@"; do
    "$bin" --model fashion=models/fashion-trouser.anodm --bind 127.0.0.1 --port 39998 \
        --db "$tmp/fp.db" 2>"$tmp/anodmd.log" &
    pid=$!
    for i in $(seq 100); do curl -sf http://127.0.0.1:39998/readyz >/dev/null && break; sleep 0.2; done
    wrk -t 2 -c 64 -d 10s --timeout 5s -s tests/wrk_score.lua http://127.0.0.1:39998/v1/score \
        -- "$tmp/batch64.json" 0 >"$tmp/fill.txt" 2>&1
    sleep 2
    for run in 1 2; do
        wrk -t 2 -c 16 -d 10s --timeout 5s --latency -s tests/wrk_score.lua \
            http://127.0.0.1:39998/v2/models/fashion/infer -- "$tmp/single-fp32.bin" 2.9 \
            "$(cat "$tmp/single-fp32.hlen")" >"$tmp/paced.txt" 2>&1
        echo "$bin: fill $(awk '/Requests\/sec/ { print $2 }' "$tmp/fill.txt") req/s x 64;" \
             "paced FP32: $(grep WRKSTATS "$tmp/paced.txt" | cut -d' ' -f2,4,5)"
    done
    kill "$pid"; wait "$pid" || true
    rm -f "$tmp"/fp.db*
done
