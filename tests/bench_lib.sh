# bench_lib.sh — what the daemon benchmark scripts share; sourced (". tests/bench_lib.sh"),
# never run. Their raw outputs are committed under docs/results/, so each starts with the
# same line saying where and when it ran.

# The machine line: CPU, cores, load, date, commit, and whatever the caller adds (the
# version of a part it drives).
bench_machine() {
    echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
         "load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC');" \
         "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')${*:+; $*}"
}

# MODEL, or when unset a small Fashion-MNIST bundle built once into
# /tmp/anodm-bench-pgsink.anodm (3000 images, 2 epochs, 1000-point map; about 20 s) for
# benchmarks of what surrounds scoring, not of scoring itself. Needs ANODM_BIN, FMNIST.
bench_small_model() {
    if [ -z "${MODEL:-}" ]; then
        MODEL=/tmp/anodm-bench-pgsink.anodm
        if ! "$ANODM_BIN" inspect "$MODEL" >/dev/null 2>&1; then
            echo "model: building a small one into $MODEL (3000 images, 2 epochs, 1000-point map)"
            "$ANODM_BIN" train --data "$FMNIST" --exclude-class 1 --limit 3000 --epochs 2 \
                --n-ref 1000 --tsne-iter 300 --out "$MODEL" >/dev/null
        fi
    fi
    echo "model: $MODEL"
}

# One anodmd at a time, for the scripts that start and stop several in turn; they set
# ANODMD_BIN, MODEL and tmp (their temporary directory).
# anodmd NAME ARGS...: start one on a free port of 127.0.0.1, its log and score log under
# $tmp/NAME.*, and wait until it listens; sets $pid and $base.
anodmd() {
    name=$1; shift
    : >"$tmp/$name.log"          # before the start: no earlier run's port read
    "$ANODMD_BIN" --model "fashion=$MODEL" --port 0 --db "$tmp/$name.db" "$@" 2>"$tmp/$name.log" &
    pid=$!
    port=""; i=0
    while [ -z "$port" ] && [ $i -lt 600 ]; do
        port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$tmp/$name.log")
        kill -0 "$pid" 2>/dev/null || { cat "$tmp/$name.log" >&2; exit 1; }
        sleep 0.1; i=$((i + 1))
    done
    base=http://127.0.0.1:$port
}
# Stop it (SIGTERM) and wait for it.
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=""; }
# metric SERIES: its value in /metrics.
metric() { curl -s "$base/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
# Its CPU so far, user + system, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
