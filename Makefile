# anodm — build, test, run.  `make run` and `make test` do all set-up on Debian 12.
#
# Layout: core/ is libanodm (maths, no I/O formats beyond datasets), proto/ the wire and
# file formats, daemon/ anodmd, cli/ anodm, tests/ one runner for every C test.

CC       ?= cc
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build
# Portable x86-64 code by default (valgrind reads it too); e.g. ARCHFLAGS=-march=native.
ARCHFLAGS ?=
OPT      ?= -O2
CFLAGS   ?= $(OPT) -g $(ARCHFLAGS)
CFLAGS   += -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
            -Icore -Iproto -MMD -MP
LDLIBS   += -lopenblas -ljansson -lz -lm -lpthread
SAN      ?=
PYTHON   ?= /usr/bin/python3

DEB_PKGS       = build-essential pkg-config libopenblas-dev libopenblas0-pthread zlib1g-dev \
                 libjansson-dev libmicrohttpd-dev libsqlite3-dev dataset-fashion-mnist
DEB_BENCH_PKGS = python3-torch python3-sklearn python3-numpy
FMNIST         = /usr/share/datasets/fashion-mnist

CORE_SRC  = $(wildcard core/*.c) $(wildcard proto/*.c)
CORE_OBJ  = $(CORE_SRC:%.c=$(BUILD)/%.o)
CLI_SRC   = $(wildcard cli/*.c)
CLI_OBJ   = $(CLI_SRC:%.c=$(BUILD)/%.o)
DAEMON_SRC = $(wildcard daemon/*.c)
DAEMON_OBJ = $(DAEMON_SRC:%.c=$(BUILD)/%.o)
DAEMON_LIBS = -lmicrohttpd -lsqlite3
TEST_SRC  = $(wildcard tests/*.c)
TEST_OBJ  = $(TEST_SRC:%.c=$(BUILD)/%.o)
LIB       = $(BUILD)/libanodm.a

.PHONY: all deps bench-deps test asan-test bench run install clean fixtures

all: $(BUILD)/anodm $(BUILD)/anodmd

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -c $< -o $@

$(LIB): $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/anodm: $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(SAN) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/anodmd: $(DAEMON_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(SAN) -o $@ $(DAEMON_OBJ) $(LIB) $(DAEMON_LIBS) $(LDLIBS)

# The daemon's tests read its SQLite log directly.
$(BUILD)/test_runner: $(TEST_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(SAN) -o $@ $(TEST_OBJ) $(LIB) -lsqlite3 $(LDLIBS)

# Install the Debian packages the build needs, only those that are missing.
deps:
	@$(MAKE) --no-print-directory _apt PKGS="$(DEB_PKGS)"

bench-deps:
	@$(MAKE) --no-print-directory _apt PKGS="$(DEB_PKGS) $(DEB_BENCH_PKGS)"

_apt:
	@missing=""; for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	fi

test: deps
	@$(MAKE) --no-print-directory $(BUILD)/test_runner $(BUILD)/anodm $(BUILD)/anodmd
	ANODM_BIN=$(BUILD)/anodm ANODMD_BIN=$(BUILD)/anodmd $(BUILD)/test_runner

# The same tests under AddressSanitizer and UndefinedBehaviorSanitizer, in their own build.
asan-test: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  build-asan/test_runner build-asan/anodm build-asan/anodmd
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ANODM_BIN=build-asan/anodm ANODMD_BIN=build-asan/anodmd build-asan/test_runner

# Regenerate the PyTorch parity fixtures (needs python3-torch; the results are committed).
fixtures: bench-deps
	for g in tests/gen_fixtures*.py; do $(PYTHON) $$g tests/fixtures || exit 1; done

bench: bench-deps all
	ANODM_BIN=$(BUILD)/anodm PYTHON=$(PYTHON) sh tests/bench.sh

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

clean:
	rm -rf build build-asan

-include $(CORE_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(DAEMON_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
