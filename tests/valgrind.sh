#!/bin/sh
# make valgrind: the daemon's process-level tests (every test named daemon_*: test_daemon.c,
# test_daemon_abuse.c, test_daemon_faults.c, test_daemon_soak.c) with every anodmd they
# start running under valgrind's memcheck. The test runner itself runs natively; each
# daemon is started through a wrapper script given as ANODMD_BIN, which execs valgrind
# (so the pid the tests signal is valgrind's, and SIGTERM/SIGHUP/SIGKILL reach the daemon).
#
# valgrind exits 99 on any memory error or definite/indirect leak, and the tests check that
# every daemon they stop exits 0, so a finding fails its test; the per-process logs are
# summed up at the end as well. ANODM_VALGRIND tells the tests to wait longer.
#
#   sh tests/valgrind.sh [BUILD]      (BUILD: the build directory, build by default)
# Environment: VALGRIND_TESTS (test name filter, "daemon" by default), ANODM_CRASH_ROUNDS
# (2), ANODM_SOAK_SECONDS (30).
set -u
BUILD=${1:-build}
top=$(pwd)
dir=$(mktemp -d /tmp/anodm-valgrind-XXXXXX)
command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)"; exit 2; }

# OPENBLAS_CORETYPE is set so that the daemon does not re-execute itself to pick kernels
# (core/base/blas.c), which would leave valgrind (valgrind 3.19 runs no AVX-512 code), and for
# the test runner too: tests compare the daemon's scores with their own to 1e-6, which
# holds only when both run the same BLAS kernels. Sandybridge's (AVX, no FMA), because
# valgrind does not reproduce fused multiply-adds bit for bit (with Haswell's kernels the
# daemon's scores drift by ~1e-6 from the runner's).
cat >"$dir/anodmd" <<EOF
#!/bin/sh
OPENBLAS_CORETYPE=Sandybridge exec valgrind --error-exitcode=99 --leak-check=full \\
  --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \\
  --log-file=$dir/vg.%p.log "$top/$BUILD/anodmd" "\$@"
EOF
chmod +x "$dir/anodmd"

echo "valgrind: daemon logs in $dir"
status=0
OPENBLAS_CORETYPE=Sandybridge ANODM_VALGRIND=1 ANODMD_BIN="$dir/anodmd" ANODM_BIN="$BUILD/anodm" \
  ANODM_CRASH_ROUNDS=${ANODM_CRASH_ROUNDS:-2} ANODM_SOAK_SECONDS=${ANODM_SOAK_SECONDS:-30} \
  "$BUILD/test_runner" ${VALGRIND_TESTS:-daemon} || status=$?

# Every daemon's report: the error summary and the leak summary (a daemon killed on
# purpose, by the kill -9 rounds or after a test failed, has none).
runs=0; reported=0; errors=0; lost=0
for f in "$dir"/vg.*.log; do
  [ -e "$f" ] || continue
  runs=$((runs + 1))
  if grep -q "ERROR SUMMARY" "$f"; then reported=$((reported + 1)); fi
  e=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$f" | tr -d , | tail -1)
  l=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$f" | tr -d , | tail -1)
  # A killed daemon has no summary, but its errors are in its log as they happened.
  seen=$(grep -cE '^==[0-9]+== (Invalid |Conditional jump|Use of uninitialised|Syscall param|Mismatched free|Source and destination overlap|Argument .* of function)' "$f")
  [ "${e:-0}" = 0 ] && [ "$seen" != 0 ] && e=$seen
  if [ "${e:-0}" != 0 ] || [ "${l:-0}" != 0 ]; then
    echo "valgrind: $f: ${e:-0} errors, ${l:-0} bytes definitely lost"
    errors=$((errors + ${e:-0})); lost=$((lost + ${l:-0}))
  fi
done
echo "valgrind: $runs daemon runs under memcheck, $reported of them to their exit (the others killed);"
echo "valgrind: $errors errors, $lost bytes definitely lost in their logs"
[ "$errors" = 0 ] && [ "$lost" = 0 ] || status=1
exit $status
