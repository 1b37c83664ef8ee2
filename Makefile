# anodm — build, test, run.  `make run` and `make test` do all set-up on Debian 12.
#
# Layout: core/ is libanodm (maths and the data readers: base, nn, map, data, detect),
# proto/ the wire and file formats, daemon/ anodmd, cli/ anodm, tests/ one runner for every
# C test. README.md ("Layout") draws who may include whom.

CC       ?= cc
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build
# Portable x86-64 code by default (valgrind reads it too); e.g. ARCHFLAGS=-march=native.
ARCHFLAGS ?=
OPT      ?= -O2
CFLAGS   ?= $(OPT) -g $(ARCHFLAGS)
CFLAGS   += -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
            -MMD -MP
LDLIBS   += -lopenblas -ljansson -lz -lm -lpthread
SAN      ?=
PYTHON   ?= /usr/bin/python3

DEB_PKGS       = build-essential pkg-config libopenblas-dev libopenblas0-pthread zlib1g-dev \
                 libjansson-dev libmicrohttpd-dev libsqlite3-dev libpq-dev dataset-fashion-mnist
DEB_BENCH_PKGS = python3-torch python3-sklearn python3-numpy wrk
# The dashboard's browser test (tests/dashboard/), part of `make test`: Debian's Chromium,
# driven by playwright-core from npm with the machine's Node.js.
DEB_BROWSER_PKGS = chromium
# The Open Inference Protocol's conformance test (tests/v2_conformance.py), part of
# `make test`: Debian's Python and these.
DEB_V2_TEST_PKGS = python3-requests python3-jsonschema python3-yaml
# The Kubernetes manifests' offline check (tests/k8s/, part of `make test`): yamllint from
# Debian, kubernetes-models from npm with the machine's Node.js, and kubectl (kustomize)
# where the machine has it (not a Debian package); promtool where it is installed (the
# alert rules' PromQL; Debian's prometheus package, not installed for this).
DEB_K8S_PKGS   = yamllint
# The multi-replica test (tests/cluster/): HAProxy from Debian in front of anodmd.
DEB_CLUSTER_PKGS = haproxy wrk python3
# PostgreSQL's server programs (initdb, pg_ctl, postgres) for the tests of the sink and the
# merged history (tests/test_daemon_pg.c, the cluster test), which start a server of their
# own in a temporary folder: Debian 12's server package, installed by pg-deps below without
# the system cluster that its install would otherwise create and start.
DEB_PG_PKGS    = postgresql-15
FMNIST         = /usr/share/datasets/fashion-mnist
# The raw MIT-BIH records: next to the repository, else at the project machines' path.
ECG_DATA      ?= $(firstword $(wildcard ../shared/data/ecg/mitdb /work/shared/data/ecg/mitdb) ../shared/data/ecg/mitdb)

# core/'s parts and what each may include: a part is compiled with its own folder and
# those below it on the include path and nothing else, so an include that runs the wrong
# way (nn reaching into map, map into detect, core into proto) fails to build.
INC_base   = -Icore/base
INC_nn     = -Icore/nn $(INC_base)
INC_map    = -Icore/map $(INC_base)
INC_data   = -Icore/data $(INC_base)
INC_detect = -Icore/detect $(INC_nn) $(INC_map) $(INC_data)
INC_proto  = -Iproto $(INC_detect)
# cli/, daemon/, tests/ and generated files see all of core and proto, and libpq's header
# (the daemon's sink and history, their tests).
PQ_CFLAGS  = $(shell pkg-config --cflags libpq 2>/dev/null)
PQ_LIBS    = $(shell pkg-config --libs libpq 2>/dev/null || echo -lpq)
INC_app    = $(INC_proto) $(PQ_CFLAGS)
# The include path of source file $1.
inc_for = $(if $(filter core/%,$1),$(INC_$(word 2,$(subst /, ,$1))),$(if $(filter proto/%,$1),$(INC_proto),$(INC_app)))

CORE_PARTS = base nn map data detect
CORE_SRC  = $(foreach p,$(CORE_PARTS),$(wildcard core/$(p)/*.c)) $(wildcard proto/*.c)
CORE_OBJ  = $(CORE_SRC:%.c=$(BUILD)/%.o)
CLI_SRC   = $(wildcard cli/*.c)
CLI_OBJ   = $(CLI_SRC:%.c=$(BUILD)/%.o)
DAEMON_SRC = $(wildcard daemon/*.c)
# The dashboard's files (daemon/dashboard/), embedded in anodmd as C arrays by a generator.
DASH_FILES = $(sort $(wildcard daemon/dashboard/*.html daemon/dashboard/*.css \
                               daemon/dashboard/*.js daemon/dashboard/*.svg))
DAEMON_OBJ = $(DAEMON_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/dashboard_files.o
DAEMON_LIBS = -lmicrohttpd -lsqlite3 $(PQ_LIBS)
TEST_SRC  = $(wildcard tests/*.c) tests/fuzz/fuzz_model.c
TEST_OBJ  = $(TEST_SRC:%.c=$(BUILD)/%.o)
LIB       = $(BUILD)/libanodm.a

.PHONY: all deps pg-deps bench-deps browser-deps test check-layers dashboard-test v2-conformance-test \
        k8s-deps k8s-test cluster-test asan-test bench ecg-stream run install clean \
        fixtures fuzz fuzz-smoke fuzz-build fuzz-deps fuzz-seeds fuzz-clean

all: $(BUILD)/anodm $(BUILD)/anodmd

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(call inc_for,$<) $(SAN) -c $< -o $@

# The generator runs at build time, so it is built without the sanitizers of SAN.
$(BUILD)/embed: daemon/dashboard/embed.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -std=c11 -Wall -Wextra -Werror -o $@ $<

$(BUILD)/gen/dashboard_files.c: $(BUILD)/embed $(DASH_FILES)
	@mkdir -p $(dir $@)
	$(BUILD)/embed $@ $(DASH_FILES)

$(BUILD)/gen/dashboard_files.o: $(BUILD)/gen/dashboard_files.c
	$(CC) $(CFLAGS) $(INC_app) $(SAN) -Idaemon -c $< -o $@

$(LIB): $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/anodm: $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(SAN) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/anodmd: $(DAEMON_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(SAN) -o $@ $(DAEMON_OBJ) $(LIB) $(DAEMON_LIBS) $(LDLIBS)

# The daemon's tests read its SQLite log directly, and tests/test_alloc_fail.c runs its
# request path in the runner: its objects without main(). Every allocation the runner's own
# code makes goes through tests/alloc_fail.c (fail the Nth, count what is not freed);
# anodm and anodmd are linked without the wrapper.
DAEMON_LIB_OBJ = $(filter-out $(BUILD)/daemon/main.o,$(DAEMON_OBJ))
ALLOC_WRAP = -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free \
             -Wl,--wrap=json_loadb,--wrap=json_loads

$(BUILD)/test_runner: $(TEST_OBJ) $(DAEMON_LIB_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(SAN) $(ALLOC_WRAP) -o $@ $(TEST_OBJ) $(DAEMON_LIB_OBJ) $(LIB) \
	  $(DAEMON_LIBS) $(LDLIBS)

$(BUILD)/tests/test_alloc_fail.o $(BUILD)/tests/test_payload_log.o $(BUILD)/tests/test_daemon_pg.o: \
  CFLAGS += -Idaemon

# The score log's writer alone, without HTTP or scoring (tests/bench/log_writer.c): its CPU
# a row. Not part of `make test`.
$(BUILD)/bench_log_writer: tests/bench/log_writer.c $(DAEMON_LIB_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(INC_app) -Idaemon $(SAN) -o $@ $< $(DAEMON_LIB_OBJ) $(LIB) \
	  $(DAEMON_LIBS) $(LDLIBS)

# Install the Debian packages the build needs, only those that are missing.
deps:
	@$(MAKE) --no-print-directory _apt PKGS="$(DEB_PKGS)"

# The daemon's load test checks its binary bodies with tests/v2_conformance.py's client.
bench-deps:
	@$(MAKE) --no-print-directory _apt PKGS="$(DEB_PKGS) $(DEB_BENCH_PKGS) $(DEB_V2_TEST_PKGS)"

# Chromium from Debian; Node.js and npm are the machine's (Debian's only if it has none).
browser-deps:
	@$(MAKE) --no-print-directory _apt PKGS="$(DEB_BROWSER_PKGS)"
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  $(MAKE) --no-print-directory _apt PKGS="nodejs npm"

# postgresql-common creates (and starts) a cluster "main" on port 5432 when a server
# package is first installed, unless create_main_cluster is off in createcluster.conf or
# a file of its createcluster.d/ (read at install time, the last file winning): such a
# file is put there for the install and removed after it, so nothing else is changed and
# no server is left running. Without its recommendations either: sysstat would bring cron
# and a mail server (exim4), each a daemon of its own.
PG_NO_CLUSTER = /etc/postgresql-common/createcluster.d/zz-anodm-install.conf

pg-deps:
	@if ! dpkg-query -W -f='$${Status}\n' $(DEB_PG_PKGS) 2>/dev/null | grep -q '^install ok installed'; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo mkdir -p $(dir $(PG_NO_CLUSTER)) && \
	  echo "create_main_cluster = false" | $$sudo tee $(PG_NO_CLUSTER) >/dev/null && \
	  $(MAKE) --no-print-directory _apt PKGS="$(DEB_PG_PKGS)" APT_FLAGS=--no-install-recommends; \
	  rc=$$?; \
	  $$sudo rm -f $(PG_NO_CLUSTER); exit $$rc; \
	fi

_apt:
	@missing=""; for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $(APT_FLAGS) $$missing; \
	fi

test: deps pg-deps browser-deps check-layers
	@$(MAKE) --no-print-directory $(BUILD)/test_runner $(BUILD)/anodm $(BUILD)/anodmd \
	  $(BUILD)/stream_lab
	ANODM_BIN=$(BUILD)/anodm ANODMD_BIN=$(BUILD)/anodmd $(BUILD)/test_runner
	@$(MAKE) --no-print-directory k8s-test
	@$(MAKE) --no-print-directory cluster-test CLUSTER_ARGS=--no-throughput
	@$(MAKE) --no-print-directory dashboard-test
	@$(MAKE) --no-print-directory v2-conformance-test
	@$(MAKE) --no-print-directory fuzz-smoke

# The include path alone says what a file may see (INC_* above), so an include never names
# a folder ("../map/tsne.h" would get round it), and no source sits in core/ outside its
# five parts (it would not be built).
check-layers:
	@bad=$$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"]*/' \
	        core/*/*.[ch] proto/*.[ch] cli/*.[ch] daemon/*.[ch]; \
	        ls core/*.[ch] 2>/dev/null); \
	if [ -n "$$bad" ]; then echo "check-layers: against the layout (README.md, Layout):"; \
	    echo "$$bad"; exit 1; fi

# The dashboard in Chromium against a running anodmd (tests/dashboard/test.mjs), with a
# small Fashion-MNIST model trained on first use (about 10 s) and kept in the build tree
# (its threshold at the 0.95 quantile, so that the few test samples show some anomalies).
# Screenshots and the daemon's output go to $(BUILD)/dashboard-test/.
DASH_TEST_MODEL = $(BUILD)/dashboard-test/fashion-small.anodm

$(DASH_TEST_MODEL): | $(BUILD)/anodm
	@mkdir -p $(dir $@)
	$(BUILD)/anodm train --data $(FMNIST) --exclude-class 1 --limit 3000 --epochs 4 \
	  --beta 0.01 --n-ref 1000 --tsne-iter 300 --quantile 0.95 --out $@ \
	  >$(BUILD)/dashboard-test/train.log 2>&1 \
	  || { tail -5 $(BUILD)/dashboard-test/train.log; exit 1; }

# And a small heartbeat model (records 100 and 119, V held out, 1 epoch, about 20 s) for
# the dashboard's waveform view.
DASH_ECG_BEATS = $(BUILD)/dashboard-test/ecg-beats.npy
DASH_ECG_MODEL = $(BUILD)/dashboard-test/ecg-small.anodm

$(DASH_ECG_MODEL): | $(BUILD)/anodm
	@mkdir -p $(dir $@)
	$(BUILD)/anodm ecg-extract --data $(ECG_DATA) --records 100,119 --out $(DASH_ECG_BEATS) \
	  >$(BUILD)/dashboard-test/ecg-train.log 2>&1 \
	  || { tail -5 $(BUILD)/dashboard-test/ecg-train.log; exit 1; }
	$(BUILD)/anodm train --data $(DASH_ECG_BEATS) --labels $(DASH_ECG_BEATS:.npy=.labels.npy) \
	  --arch ecg-tcn --exclude-class 2 --limit 1500 --epochs 1 --beta 0.01 --n-ref 500 \
	  --perplexity 10 --tsne-iter 300 --quantile 0.8 --out $@ \
	  >>$(BUILD)/dashboard-test/ecg-train.log 2>&1 \
	  || { tail -5 $(BUILD)/dashboard-test/ecg-train.log; exit 1; }

tests/dashboard/node_modules/.package-lock.json: tests/dashboard/package-lock.json
	cd tests/dashboard && npm ci --no-audit --no-fund --loglevel=error

dashboard-test: browser-deps
	@$(MAKE) --no-print-directory $(BUILD)/anodm $(BUILD)/anodmd $(DASH_TEST_MODEL) \
	  $(DASH_ECG_MODEL) tests/dashboard/node_modules/.package-lock.json
	node tests/dashboard/test.mjs --anodmd $(BUILD)/anodmd --model $(DASH_TEST_MODEL) \
	  --data $(FMNIST) --out $(BUILD)/dashboard-test \
	  --ecg-model $(DASH_ECG_MODEL) --ecg-beats $(DASH_ECG_BEATS)

# The Open Inference Protocol as a client speaks it, JSON and binary tensors, against /v1's
# answers and the specification's schemas (tests/v2_conformance.py, tests/v2_schemas.yaml),
# on the dashboard test's model (trained on first use, about 10 s); a few seconds. Debian's
# Python ($(PYTHON)) with the packages above, installed when missing; without Python at all
# the test says so and is skipped.
v2-conformance-test:
	@if ! command -v $(PYTHON) >/dev/null; then \
	  echo "v2-conformance-test: SKIPPED: no $(PYTHON) on this machine"; exit 0; fi; \
	$(MAKE) --no-print-directory _apt PKGS="$(DEB_V2_TEST_PKGS)" && \
	$(MAKE) --no-print-directory $(BUILD)/anodm $(BUILD)/anodmd $(DASH_TEST_MODEL) && \
	$(PYTHON) tests/v2_conformance.py --anodmd $(BUILD)/anodmd --model $(DASH_TEST_MODEL) \
	  --data $(FMNIST) --out $(BUILD)/v2-conformance
# Three anodmd replicas behind HAProxy on 127.0.0.1 under a paced load, each shipping its
# log to a PostgreSQL the test starts in a temporary folder (about 20 s): kill -9 one and
# restart it on its log, restart PostgreSQL, SIGTERM one (its readiness-first drain) and
# bring it back; then every acknowledged score must be in exactly one replica's log, once,
# and once in PostgreSQL, no 5xx but the killed replica's requests in flight, each source
# on one replica, the merged history through each replica equal to the union of the logs
# (a poller of it through HAProxy refused only while PostgreSQL was down); then, unless
# CLUSTER_ARGS=--no-throughput (as `make test` runs it), wrk through HAProxy with 1, 2 and
# 3 replicas (tests/cluster/cluster_test.py, docs/DEPLOY.md). The small dashboard model
# by default (CLUSTER_MODEL= for another); CLUSTER_OUT=DIR keeps the raw output.
CLUSTER_MODEL ?= $(DASH_TEST_MODEL)
CLUSTER_ARGS  ?=

cluster-test: deps pg-deps
	@$(MAKE) --no-print-directory _apt PKGS="$(DEB_CLUSTER_PKGS)"
	@$(MAKE) --no-print-directory $(BUILD)/anodm $(BUILD)/anodmd $(CLUSTER_MODEL)
	$(PYTHON) tests/cluster/cluster_test.py --anodmd $(BUILD)/anodmd --model $(CLUSTER_MODEL) \
	  --data $(FMNIST) $(if $(CLUSTER_OUT),--out $(CLUSTER_OUT)) $(CLUSTER_ARGS)

# deploy/k8s checked offline (tests/k8s/check.sh, a few seconds): yamllint, every overlay
# rendered by kubectl kustomize and checked against the Kubernetes schemas with unknown
# fields refused, the restricted Pod Security profile, anodmd --check-config on the
# ConfigMap; and each of tests/k8s/bad/ refused.
k8s-deps:
	@$(MAKE) --no-print-directory _apt PKGS="$(DEB_K8S_PKGS)"
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  $(MAKE) --no-print-directory _apt PKGS="nodejs npm"

tests/k8s/node_modules/.package-lock.json: tests/k8s/package-lock.json
	cd tests/k8s && npm ci --no-audit --no-fund --loglevel=error

k8s-test: k8s-deps
	@$(MAKE) --no-print-directory $(BUILD)/anodmd tests/k8s/node_modules/.package-lock.json
	ANODMD_BIN=$(BUILD)/anodmd sh tests/k8s/check.sh

# The same tests under AddressSanitizer and UndefinedBehaviorSanitizer, in their own build.
asan-test: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  build-asan/test_runner build-asan/anodm build-asan/anodmd
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ANODM_BIN=build-asan/anodm ANODMD_BIN=build-asan/anodmd build-asan/test_runner

# Hardening (issue 8), not part of `make test`, which runs the short versions:
# `make faults` the fault tests with CRASH_ROUNDS kill -9 rounds; `make soak` SOAK_SECONDS
# of mixed load, samples in $(BUILD)/soak-report.txt; `make valgrind` the daemon's
# process-level tests with every anodmd under valgrind memcheck (tests/valgrind.sh), in
# their own portable build (build-valgrind/: objects left by an ARCHFLAGS=-march=native
# build would hold AVX-512 code, which valgrind cannot run).
.PHONY: faults soak valgrind test-kernels
CRASH_ROUNDS ?= 100
SOAK_SECONDS ?= 600

faults: deps
	@$(MAKE) --no-print-directory $(BUILD)/test_runner $(BUILD)/anodmd
	ANODM_CRASH_ROUNDS=$(CRASH_ROUNDS) ANODMD_BIN=$(BUILD)/anodmd $(BUILD)/test_runner daemon_fault

soak: deps
	@$(MAKE) --no-print-directory $(BUILD)/test_runner $(BUILD)/anodmd
	ANODM_SOAK_SECONDS=$(SOAK_SECONDS) ANODM_SOAK_REPORT=$(BUILD)/soak-report.txt \
	  ANODMD_BIN=$(BUILD)/anodmd $(BUILD)/test_runner daemon_soak

valgrind: deps
	@$(MAKE) --no-print-directory _apt PKGS="valgrind"
	@$(MAKE) --no-print-directory BUILD=build-valgrind ARCHFLAGS= \
	  build-valgrind/test_runner build-valgrind/anodm build-valgrind/anodmd
	sh tests/valgrind.sh build-valgrind

# The C tests once per OpenBLAS kernel family this CPU runs (tests/test_kernels.sh; run it
# before every submission): the environment's choice first, then OPENBLAS_CORETYPE set to
# each (KERNELS="Haswell SkylakeX" to choose, TESTS="scorer_ pipeline_" to narrow).
test-kernels: deps
	@$(MAKE) --no-print-directory $(BUILD)/test_runner $(BUILD)/anodm $(BUILD)/anodmd
	KERNELS="$(KERNELS)" sh tests/test_kernels.sh $(BUILD) $(TESTS)

# Regenerate the PyTorch parity fixtures (needs python3-torch; the results are committed).
fixtures: bench-deps
	for g in tests/gen_fixtures*.py; do $(PYTHON) $$g tests/fixtures || exit 1; done

# Raw output of every step, with the machine, its load and the commit, goes to
# docs/results/bench-<UTC date>/ (BENCH_OUT= to change), where the docs' figures cite it.
bench: bench-deps all
	ANODM_BIN=$(BUILD)/anodm PYTHON=$(PYTHON) ECG_DATA=$(ECG_DATA) sh tests/bench.sh

# The ECG stream protocol (docs/ECG.md, "ECG as it is monitored"): CNN detectors on 12,000
# training beats, 10 epochs, for the beat and the patient split (cached in ECG_MODELS and
# reused), each test record streamed whole through its own memory. About 15 minutes on 2
# cores the first time, 5 with the detectors cached. Raw outputs (stream.md, stream.json,
# run.log) go to docs/results/ecg-stream-<UTC date>/stream-<split>/.
ECG_MODELS ?= models/ecg
ecg-stream: all
	@mkdir -p $(ECG_MODELS)
	for split in beat patient; do \
	  out=docs/results/ecg-stream-$$(date -u +%F)/stream-$$split; mkdir -p $$out || exit 1; \
	  nice -n 10 $(BUILD)/anodm experiment --dataset ecg --data $(ECG_DATA) --encoder cnn \
	    --split $$split --classes all --epochs 10 --train-limit 12000 --n-ref 4000 \
	    --threads 1 --stream --models $(ECG_MODELS) --out-dir $$out > $$out/run.log 2>&1 \
	    || { tail $$out/run.log; exit 1; }; \
	done

# What the sink and the merged history cost (docs/DEPLOY.md, "Costs"): wrk and Debian's
# PostgreSQL (initdb, pg_ctl: pg-deps); raw output to stdout.
.PHONY: bench-pgsink
bench-pgsink: bench-deps pg-deps all
	ANODM_BIN=$(BUILD)/anodm ANODMD_BIN=$(BUILD)/anodmd PYTHON=$(PYTHON) sh tests/bench_pgsink.sh

# The default model: Fashion-MNIST with trouser (class 1) held out as the anomaly,
# built on first use (about 5 minutes on 2 cores) and cached under models/.
DEFAULT_MODEL = models/fashion-trouser.anodm

$(DEFAULT_MODEL):
	@mkdir -p models
	$(BUILD)/anodm train --data $(FMNIST) --exclude-class 1 --beta 0.01 --epochs 20 --out $@

PORT ?= 8080

# Build, make the default model on first use, and serve it on 127.0.0.1:$(PORT).
run: deps
	@$(MAKE) --no-print-directory $(BUILD)/anodm $(BUILD)/anodmd
	@$(MAKE) --no-print-directory $(DEFAULT_MODEL)
	$(BUILD)/anodmd --model fashion=$(DEFAULT_MODEL) --bind 127.0.0.1 --port $(PORT) \
	  --db models/anodmd.db

# The container image (docker/Dockerfile) with Debian's podman and no registry: a base
# made by debootstrap, `podman import`, `podman build` (as root; docker/build-image.sh).
# SOURCE=head builds the committed HEAD instead of the working tree. To run and probe it:
# docker/build-image.sh check MODEL.anodm
.PHONY: image
image:
	sh docker/build-image.sh

# Binaries, the default config (kept if one is there) and the systemd unit, whose paths
# are rewritten to PREFIX and SYSCONFDIR.
SYSCONFDIR ?= $(PREFIX)/etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(UNITDIR)
	install -m 755 $(BUILD)/anodm $(DESTDIR)$(PREFIX)/bin/anodm
	install -m 755 $(BUILD)/anodmd $(DESTDIR)$(PREFIX)/bin/anodmd
	[ -e $(DESTDIR)$(SYSCONFDIR)/anodmd.conf ] || \
	  install -m 644 etc/anodmd.conf $(DESTDIR)$(SYSCONFDIR)/anodmd.conf
	sed -e 's|/usr/local/etc|$(SYSCONFDIR)|g' -e 's|/usr/local|$(PREFIX)|g' systemd/anodmd.service >$(DESTDIR)$(UNITDIR)/anodmd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/anodmd.service

# ---------------------------------------------------------------------------- fuzzing
# libFuzzer targets (tests/fuzz/fuzz_*.c), one per parser of hostile input, built with
# clang under ASan + UBSan in their own tree (build-fuzz/), so the normal build is never
# touched. `make fuzz` runs each target for FUZZ_SECONDS, one after the other; new
# inputs go to build-fuzz/corpus/<target>/ (seeded from tests/fuzz/corpus/<target>/),
# crashes to build-fuzz/artifacts/<target>/, logs to build-fuzz/logs/. `make fuzz-smoke`
# is the same for 10 s each, and the last step of `make test` (about two minutes with the
# build).
FUZZ_PKGS     = clang libclang-rt-14-dev
FUZZ_CC      ?= clang
FUZZ_BUILD    = build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# clang does not define __SANITIZE_ADDRESS__, so core/base/simd.h would use target_clones,
# whose ifunc clang 14 names "f.ifunc" and other files then cannot link to: define it.
FUZZ_CFLAGS   = -O1 -g -std=c11 -Wall -Wextra -Wno-missing-field-initializers \
                -D__SANITIZE_ADDRESS__=1 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
                $(INC_app) -Idaemon -Itests/fuzz -MMD -MP
# Files other work may have half-written; the parsers need none of them.
FUZZ_EXCLUDE ?= core/detect/experiment.c
FUZZ_LIB_SRC  = $(filter-out $(FUZZ_EXCLUDE),$(CORE_SRC))
FUZZ_LIB_OBJ  = $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_LIB      = $(FUZZ_BUILD)/libanodm-fuzz.a
# The daemon without its main(): config (fuzz_config), the router and what its handlers
# need (fuzz_router).
FUZZ_DAEMON_SRC = $(filter-out daemon/main.c,$(DAEMON_SRC))
FUZZ_DAEMON_OBJ = $(FUZZ_DAEMON_SRC:%.c=$(FUZZ_BUILD)/%.o) $(FUZZ_BUILD)/gen/dashboard_files.o
FUZZ_TARGETS  = idx npy csv bundle weights api net config router wfdb memstate cloudevent jsonw
FUZZ_BINS     = $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_LIBS     = $(FUZZ_LIB) -lsqlite3 $(LDLIBS)
# Largest input per target: a few times the seeds, within what each format needs.
FUZZ_MAXLEN_idx = 8192
FUZZ_MAXLEN_npy = 8192
FUZZ_MAXLEN_csv = 8192
FUZZ_MAXLEN_bundle = 16384
FUZZ_MAXLEN_weights = 8192
FUZZ_MAXLEN_api = 16384
FUZZ_MAXLEN_net = 1100
FUZZ_MAXLEN_config = 16384
FUZZ_MAXLEN_router = 4096
FUZZ_MAXLEN_wfdb = 4096
FUZZ_MAXLEN_memstate = 4096
FUZZ_MAXLEN_cloudevent = 4096
FUZZ_MAXLEN_jsonw = 4096
FUZZ_DICT_api = -dict=tests/fuzz/json.dict
FUZZ_DICT_router = -dict=tests/fuzz/json.dict
FUZZ_DICT_net = -dict=tests/fuzz/net.dict
FUZZ_DICT_wfdb = -dict=tests/fuzz/wfdb.dict

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_LIB): $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_model.c $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $< tests/fuzz/fuzz_model.c $(FUZZ_LIBS)

$(FUZZ_BUILD)/fuzz_config: $(FUZZ_BUILD)/daemon/config.o
$(FUZZ_BUILD)/fuzz_router: $(FUZZ_DAEMON_OBJ)
$(FUZZ_BUILD)/gen/dashboard_files.o: $(BUILD)/gen/dashboard_files.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_BUILD)/fuzz_config $(FUZZ_BUILD)/fuzz_router: FUZZ_LIBS = $(filter $(FUZZ_BUILD)/daemon/% $(FUZZ_BUILD)/gen/%,$^) \
    $(FUZZ_LIB) $(DAEMON_LIBS) $(LDLIBS)

# Writes the generated seeds (the bundle and weights files) into tests/fuzz/corpus/.
$(FUZZ_BUILD)/gen_seeds: tests/fuzz/gen_seeds.c tests/fuzz/fuzz_model.c $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -o $@ $< tests/fuzz/fuzz_model.c $(FUZZ_LIBS)

fuzz-deps: deps
	@$(MAKE) --no-print-directory _apt PKGS="$(FUZZ_PKGS)"

fuzz-build: fuzz-deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

fuzz-seeds: fuzz-deps
	@$(MAKE) --no-print-directory $(FUZZ_BUILD)/gen_seeds
	$(FUZZ_BUILD)/gen_seeds tests/fuzz/corpus

fuzz: fuzz-build
	@mkdir -p $(FUZZ_BUILD)/logs; status=0; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts/$$t; \
	  case $$t in \
	    idx) ml=$(FUZZ_MAXLEN_idx) d="";; npy) ml=$(FUZZ_MAXLEN_npy) d="";; \
	    csv) ml=$(FUZZ_MAXLEN_csv) d="";; bundle) ml=$(FUZZ_MAXLEN_bundle) d="";; \
	    weights) ml=$(FUZZ_MAXLEN_weights) d="";; api) ml=$(FUZZ_MAXLEN_api) d="$(FUZZ_DICT_api)";; \
	    net) ml=$(FUZZ_MAXLEN_net) d="$(FUZZ_DICT_net)";; config) ml=$(FUZZ_MAXLEN_config) d="";; \
	    router) ml=$(FUZZ_MAXLEN_router) d="$(FUZZ_DICT_router)";; \
	    wfdb) ml=$(FUZZ_MAXLEN_wfdb) d="$(FUZZ_DICT_wfdb)";; \
	    memstate) ml=$(FUZZ_MAXLEN_memstate) d="";; \
	    cloudevent) ml=$(FUZZ_MAXLEN_cloudevent) d="";; \
	    jsonw) ml=$(FUZZ_MAXLEN_jsonw) d="";; \
	  esac; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s (max_len $$ml)"; \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=$$ml $$d \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t/ \
	    $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t >$(FUZZ_BUILD)/logs/$$t.log 2>&1 \
	    || { status=1; echo "fuzz: $$t FAILED, see $(FUZZ_BUILD)/logs/$$t.log and $(FUZZ_BUILD)/artifacts/$$t/"; }; \
	  echo "fuzz: $$t $$(grep -h 'stat::number_of_executed_units' $(FUZZ_BUILD)/logs/$$t.log | awk '{print $$2}') executions"; \
	done; exit $$status

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

fuzz-clean:
	rm -rf $(FUZZ_BUILD)

clean:
	rm -rf build build-asan build-valgrind

-include $(CORE_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(DAEMON_OBJ:.o=.d) $(TEST_OBJ:.o=.d) \
         $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_DAEMON_OBJ:.o=.d) $(FUZZ_BINS:=.d)

# The stream memory's method lab (tests/lab/stream_lab.c): not part of the product, but
# built by make test so that it keeps reproducing the product's figures as core/ changes.
$(BUILD)/stream_lab: tests/lab/stream_lab.c $(LIB)
	$(CC) $(CFLAGS) $(INC_app) $(SAN) -o $@ $< $(LIB) $(LDLIBS)
