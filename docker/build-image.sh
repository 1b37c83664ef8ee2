#!/bin/sh
# Build and smoke-test the anodmd image with Debian's podman, without any image registry:
# the base image is a minimal bookworm made by debootstrap from the Debian mirror and
# loaded with `podman import`. Run as root from anywhere in the tree:
#
#   docker/build-image.sh              # = deps base build
#   docker/build-image.sh check MODEL  # run the image on MODEL (a bundle), probe it, stop it
#   docker/build-image.sh prune        # drop the build cache (vfs copies every layer)
#   docker/build-image.sh env          # the exports that point podman at the same store
#
# Steps: deps (apt-get install podman, runc, debootstrap if missing), base (debootstrap +
# podman import, skipped when the base image exists), build (podman build of
# docker/Dockerfile), check, prune (drop the build cache). vfs keeps every layer as a full
# copy: a cold build leaves about 4.5 GB of cache (the builder stage is ~500 MB a layer);
# prune keeps only the base and the tagged image (~500 MB on vfs); the next build is cold.
# Podman's settings are written by this script into $ANODM_PODMAN_DIR and selected with CONTAINERS_CONF / CONTAINERS_STORAGE_CONF, so
# /etc/containers is never edited: runc, the cgroupfs manager, no ulimits (this machine
# withholds CAP_SYS_RESOURCE), vfs storage, the host's network, no systemd or journald.
#
# Settings (environment): ANODM_PODMAN_DIR (/var/lib/anodm-podman: storage, configs,
# the cached rootfs), IMAGE (localhost/anodmd:latest), BASE (localhost/debian:bookworm),
# MIRROR (http://deb.debian.org/debian), SOURCE (tree: the working tree as it is;
# head: the committed HEAD via git archive), PORT (18080, check only). The build runs at
# nice 10 with make -j$(nproc).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
dir=${ANODM_PODMAN_DIR:-/var/lib/anodm-podman}
IMAGE=${IMAGE:-localhost/anodmd:latest}
BASE=${BASE:-localhost/debian:bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
SOURCE=${SOURCE:-tree}
PORT=${PORT:-18080}

say() { printf 'build-image: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (rootful podman, debootstrap)"

# ---- podman's configuration, rewritten on every run so that it stays what is below
setup_conf() {
    mkdir -p "$dir/storage" "$dir/run" "$dir/tmp"
    cat >"$dir/containers.conf" <<EOF
# Written by docker/build-image.sh; edit the script, not this file.
[containers]
netns = "host"              # no bridge, no slirp: builds reach the Debian mirror directly
default_ulimits = []        # raising nofile needs CAP_SYS_RESOURCE, withheld here
log_driver = "k8s-file"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs" # no systemd as PID 1
events_logger = "file"      # no journald
tmp_dir = "$dir/tmp"        # keep this store's state apart from any other podman's
EOF
    cat >"$dir/storage.conf" <<EOF
# Written by docker/build-image.sh; edit the script, not this file.
[storage]
driver = "vfs"
graphroot = "$dir/storage"
runroot = "$dir/run"
EOF
    export CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf"
}

deps() {
    pkgs="podman runc conmon debootstrap containernetworking-plugins curl"
    missing=""
    for p in $pkgs; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' \
            || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    say "installing$missing"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
}

# ---- a debian:12-slim look-alike: minbase, no docs/man/locales, apt caches cleaned
base() {
    if podman image exists "$BASE"; then say "base $BASE exists"; return 0; fi
    tarball="$dir/$SUITE-rootfs.tar"
    if [ ! -s "$tarball" ]; then
        root="$dir/rootfs.tmp"
        rm -rf "$root"
        say "debootstrap $SUITE (minbase) from $MIRROR"
        debootstrap --variant=minbase --merged-usr "$SUITE" "$root" "$MIRROR" >"$dir/debootstrap.log" 2>&1 \
            || { tail -20 "$dir/debootstrap.log" >&2; die "debootstrap failed (log: $dir/debootstrap.log)"; }
        rm -f "$root/etc/apt/sources.list"
        cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        # What the Docker Hub debian images add: no docs, no translations, clean caches,
        # no service starts from maintainer scripts.
        cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
        cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
EOF
        printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
        chmod 755 "$root/usr/sbin/policy-rc.d"
        (cd "$root" || exit 1
         find usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
         find usr/share/doc -mindepth 1 -type d -empty -delete
         rm -rf usr/share/man/* usr/share/info/* usr/share/locale/* var/cache/apt/* \
                var/lib/apt/lists/* var/log/*.log var/cache/ldconfig/aux-cache \
                etc/resolv.conf etc/hostname dev/* proc/* sys/* run/* tmp/*)
        : >"$root/etc/machine-id"
        tar --numeric-owner --xattrs -C "$root" -cf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        rm -rf "$root"
    fi
    say "podman import $tarball as $BASE"
    podman import --message "debootstrap --variant=minbase $SUITE $MIRROR" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' "$tarball" "$BASE" >/dev/null
}

build() {
    ctx=$top
    if [ "$SOURCE" = head ]; then
        ctx=$(mktemp -d)
        trap 'rm -rf "$ctx"' EXIT
        git -C "$top" archive HEAD Makefile core proto daemon cli etc systemd | tar -x -C "$ctx"
        say "context: HEAD $(git -C "$top" rev-parse --short HEAD) (the Dockerfile: $here/Dockerfile)"
    else
        say "context: the working tree $top"
    fi
    # --format docker keeps HEALTHCHECK (OCI image config has no field for it).
    nice -n 10 podman build --pull=never --network=host --format=docker \
        --build-arg BASE_IMAGE="$BASE" --build-arg RUNTIME_IMAGE="$BASE" \
        -f "$here/Dockerfile" -t "$IMAGE" "$ctx"
    podman image ls "$IMAGE"
}

# ---- run the image as it would be deployed (non-root, read-only root, no capabilities)
# on MODEL, on the host network at 127.0.0.1:$PORT; probe it; stop it.
check() {
    model=${1:?usage: build-image.sh check MODEL.anodm}
    model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
    [ -r "$model" ] || die "no bundle $model"
    name=anodmd-check
    url=http://127.0.0.1:$PORT
    podman rm -f "$name" >/dev/null 2>&1 || true
    podman volume rm -f "$name-state" >/dev/null 2>&1 || true
    trap 'podman rm -f "$name" >/dev/null 2>&1; podman volume rm -f "$name-state" >/dev/null 2>&1' EXIT
    t0=$(date +%s.%N)
    # No systemd here, so podman cannot start the healthcheck's timer (it says so and goes
    # on); the check runs it by hand below with `podman healthcheck run`.
    podman run -d --name "$name" --pull=never --network=host --read-only \
        --cap-drop=ALL --security-opt=no-new-privileges \
        -e ANODMD_BIND=127.0.0.1 -e ANODMD_PORT="$PORT" \
        -v "$model:/models/check.anodm:ro" -v "$name-state:/var/lib/anodmd" \
        "$IMAGE" --model check=/models/check.anodm >/dev/null
    i=0
    until curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 300 ] || [ "$(podman inspect -f '{{.State.Running}}' "$name")" != true ]; then
            podman logs "$name" >&2; die "not ready after $i tries"
        fi
        sleep 0.1
    done
    say "ready after $(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $t0}") s"
    fail=0
    echo "GET /healthz: $(curl -sS -w ' (%{http_code})' "$url/healthz")"
    echo "GET /readyz:  $(curl -sS -w ' (%{http_code})' "$url/readyz")"
    # Two test images of Fashion-MNIST: the first ankle boot (normal) and the first
    # trouser (the class held out by `--exclude-class 1`), 784 values in [0, 1].
    fm=/usr/share/datasets/fashion-mnist
    for want in 9 1; do
        idx=$(zcat "$fm/t10k-labels-idx1-ubyte.gz" | tail -c +9 | od -An -tu1 -v \
              | tr -s ' ' '\n' | grep -v '^$' | grep -n "^$want\$" | head -1 | cut -d: -f1)
        sample=$(zcat "$fm/t10k-images-idx3-ubyte.gz" | tail -c +$((17 + (idx - 1) * 784)) | head -c 784 \
                 | od -An -tu1 -v | tr -s ' ' '\n' | grep -v '^$' \
                 | awk '{printf "%s%.4f", (NR > 1 ? "," : ""), $1 / 255}')
        out=$(curl -sS -w '\n%{http_code}' "$url/v1/score" -H 'Content-Type: application/json' \
              -d "{\"sample\": [$sample], \"source\": \"image-check\", \"id\": \"t10k-$((idx - 1))\"}")
        echo "POST /v1/score (t10k #$((idx - 1)), class $want): $(echo "$out" | tail -1)"
        echo "$out" | head -1 | cut -c 1-600
        [ "$(echo "$out" | tail -1)" = 200 ] || fail=1
    done
    echo "GET /v1/scores: $(curl -sS "$url/v1/scores?since_id=0&limit=10" | cut -c 1-300)"
    if podman healthcheck run "$name"; then hc=healthy; else hc=unhealthy; fail=1; fi
    echo "podman healthcheck run: $hc (inspect: $(podman inspect -f '{{.State.Healthcheck.Status}}' "$name"))"
    echo "user in the container: $(podman exec "$name" id)"
    if podman exec "$name" touch /usr/local/bin/x 2>/dev/null; then echo "root fs: WRITABLE"; fail=1
    else echo "root fs: read-only"; fi
    podman stop -t 30 "$name" >/dev/null
    echo "stopped: exit code $(podman inspect -f '{{.State.ExitCode}}' "$name")"
    echo "--- container log"
    podman logs "$name" 2>&1 | tail -20
    podman rm "$name" >/dev/null
    podman volume rm "$name-state" >/dev/null
    [ $fail = 0 ] || die "check FAILED"
    say "check passed"
}

setup_conf
[ $# -gt 0 ] || set -- deps base build
case $1 in
    prune) podman image prune -f >/dev/null; podman volume prune -f >/dev/null
           podman images; du -sh "$dir/storage" ;;
    env) echo "export CONTAINERS_CONF=$CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF" ;;
    check) shift; check "$@" ;;
    *) for step; do
           case $step in deps|base|build) s=$(date +%s); $step; say "$step: $(($(date +%s) - s)) s" ;;
                         *) die "unknown step $step (deps base build check prune env)" ;; esac
       done ;;
esac
