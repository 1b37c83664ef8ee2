#!/bin/sh
# make test-kernels: the C tests once per OpenBLAS kernel family this CPU can run.
#
# OpenBLAS picks its kernels when it loads, from the CPU it recognises or from
# OPENBLAS_CORETYPE; the kernels sum in different orders, so a result that holds on one of
# them only is a bug (it was: docs/BATCHING.md). The first run leaves the environment as
# it is (the kernels anodm would pick here); the others set OPENBLAS_CORETYPE to each
# family the CPU's flags allow (KERNELS="Haswell ..." to choose), and check that OpenBLAS
# really loaded it. Cooperlake's single-precision kernels are SkylakeX's, so it is tried
# only when KERNELS names it or the environment picks it.
#
# Usage: sh tests/test_kernels.sh BUILD_DIR [test-name words...]
set -u
build=$1
shift
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { case " $flags " in *" $1 "*) return 0 ;; esac; return 1; }

kernels="Prescott"
has avx && kernels="$kernels Sandybridge"
has avx2 && has fma && kernels="$kernels Haswell"
has avx512f && has avx512bw && has avx512vl && kernels="$kernels SkylakeX"
kernels=${KERNELS:-$kernels}

export ANODM_BIN="$build/anodm" ANODMD_BIN="$build/anodmd"
summary="" failed=0
run() {  # label, then the kernel to ask for ("" = the environment's choice)
    label=$1 want=$2
    shift 2
    if [ -n "$want" ]; then
        got=$(OPENBLAS_CORETYPE=$want "$build/anodm" blas | sed -n 's/^kernel //p')
        if [ "$got" != "$want" ]; then
            summary="$summary\n$label: OpenBLAS loaded '$got', not '$want': FAILED"
            failed=1
            return
        fi
    else
        got=$("$build/anodm" blas | sed -n 's/^kernel //p')
    fi
    echo "== kernel $got ($label)"
    out=$(mktemp)
    if [ -n "$want" ]; then
        OPENBLAS_CORETYPE=$want "$build/test_runner" "$@" >"$out" 2>&1
    else
        "$build/test_runner" "$@" >"$out" 2>&1
    fi
    rc=$?
    grep -v '^ok ' "$out"
    summary="$summary\n$label ($got): $(tail -n 1 "$out")"
    [ $rc -eq 0 ] || failed=1
    rm -f "$out"
}

run "environment" "" "$@"
for k in $kernels; do run "OPENBLAS_CORETYPE=$k" "$k" "$@"; done
printf "\ntest-kernels:$summary\n"
exit $failed
