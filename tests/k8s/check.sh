#!/bin/sh
# make k8s-test (part of `make test`): deploy/k8s checked offline, in a few seconds.
#   1. yamllint (tests/k8s/yamllint.yaml) on every manifest, and it must refuse a file
#      with a duplicate key (tests/k8s/lint-bad/);
#   2. `kubectl kustomize` renders every overlay of deploy/k8s/overlays/, and
#      tests/k8s/check.mjs checks the objects: Kubernetes schemas, no unknown field, the
#      restricted Pod Security profile, probes, ports, grace period, labels, and
#      `anodmd --check-config` on the ConfigMap with the container's environment;
#      the production overlay must run the merged history (--history: the PostgreSQL URI
#      from a Secret, the replica id the pod's name); it is rendered again with its
#      commented components/monitoring line taken in (PodMonitor, the sink's alerts);
#   3. the KServe example, the model loader pod and the example PostgreSQL Secret, the
#      same way; with promtool (Debian's prometheus package, not installed by make), the
#      alert rules' expressions too, and their unit test (tests/k8s/alerts-test.yaml:
#      each alert fires when, and only when, its threshold and duration say);
#   4. each overlay of tests/k8s/bad/ (one mistake each) must be refused, with the
#      message its "# expect:" line names.
# Without kubectl (not a Debian package; the project's machines have it) steps 2 and 4
# are skipped, and said so.
set -eu
ANODMD_BIN=${ANODMD_BIN:-build/anodmd}
here=$(dirname "$0")
bundle=$here/../fuzz/corpus/bundle/tiny_single.anodm
tmp=$(mktemp -d /tmp/anodm-k8s.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0 skipped=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; sed 's/^/     /' "$tmp/out"; }
check() { node "$here/check.mjs" --anodmd "$ANODMD_BIN" --bundle "$bundle" "$@" >"$tmp/out" 2>&1; }

if yamllint -s -c "$here/yamllint.yaml" deploy/k8s "$here/bad" "$here/yamllint.yaml" \
    "$here/alerts-test.yaml" >"$tmp/out" 2>&1
then ok "yamllint deploy/k8s"; else fail "yamllint deploy/k8s"; fi
if yamllint -c "$here/yamllint.yaml" "$here/lint-bad" >"$tmp/out" 2>&1; then
    fail "yamllint accepted a duplicate key"
elif grep -q key-duplicates "$tmp/out"; then ok "yamllint refuses a duplicate key"
else fail "yamllint refused a duplicate key for another reason"; fi

if check deploy/k8s/kserve/*.yaml deploy/k8s/tools/*.yaml deploy/k8s/components/history/*.example.yaml
then ok "KServe example, model loader, example Secret"
else fail "KServe example, model loader, example Secret"; fi

rules=deploy/k8s/components/monitoring/prometheusrule.yaml
rules_path=$PWD/$rules
if ! command -v promtool >/dev/null 2>&1; then
    echo "skip promtool: not installed, so the alert rules' PromQL is not parsed"
    skipped=$((skipped + 1))
elif (cd "$here" && node --input-type=module -e '
        import YAML from "yaml"; import { readFileSync } from "node:fs";
        const r = YAML.parse(readFileSync(process.argv[1], "utf8"));
        process.stdout.write(YAML.stringify({ groups: r.spec.groups }));' "$rules_path") \
        >"$tmp/rules.yaml" && promtool check rules "$tmp/rules.yaml" >"$tmp/out" 2>&1
then
    ok "promtool check rules $rules"
    cp "$here/alerts-test.yaml" "$tmp/"
    if promtool test rules "$tmp/alerts-test.yaml" >"$tmp/out" 2>&1
    then ok "promtool test rules tests/k8s/alerts-test.yaml"
    else fail "promtool test rules tests/k8s/alerts-test.yaml"; fi
else fail "promtool check rules $rules"; fi

if ! command -v kubectl >/dev/null 2>&1; then
    echo "skip overlays: no kubectl here, so deploy/k8s/overlays/* and tests/k8s/bad/* are not rendered"
    skipped=$((skipped + 1))
else
    for o in deploy/k8s/overlays/*/; do
        name=$(basename "$o")
        history=; [ "$name" = production ] && history=--history
        if kubectl kustomize "$o" >"$tmp/$name.yaml" 2>"$tmp/out" && check --labels $history "$tmp/$name.yaml"
        then ok "overlay $name: $(tail -n 1 "$tmp/out")"; else fail "overlay $name"; fi
    done
    # production as its comment says to add monitoring: the line taken in, in a copy
    cp -R deploy/k8s "$tmp/k8s"
    prod=$tmp/k8s/overlays/production/kustomization.yaml
    sed -i 's|^  # - \.\./\.\./components/monitoring$|  - ../../components/monitoring|' "$prod"
    if ! grep -q '^  - \.\./\.\./components/monitoring$' "$prod"; then
        echo "no commented components/monitoring line in the production overlay" >"$tmp/out"
        fail "overlay production + monitoring"
    elif kubectl kustomize "$tmp/k8s/overlays/production" >"$tmp/monitoring.yaml" 2>"$tmp/out" &&
         check --labels --history "$tmp/monitoring.yaml"
    then ok "overlay production + monitoring: $(tail -n 1 "$tmp/out")"
    else fail "overlay production + monitoring"; fi
    for b in "$here"/bad/*/; do
        name=$(basename "$b")
        expect=$(sed -n 's/^# expect: //p' "$b/kustomization.yaml")
        if ! kubectl kustomize "$b" >"$tmp/bad.yaml" 2>"$tmp/out"; then fail "bad/$name: does not render"
        elif check "$tmp/bad.yaml"; then fail "bad/$name: accepted"
        elif grep -qF -- "$expect" "$tmp/out"; then ok "bad/$name refused: $expect"
        else fail "bad/$name: refused, but not with \"$expect\""; fi
    done
fi
echo "k8s check: $passed passed, $failed failed$([ $skipped -eq 0 ] || echo ", $skipped skipped")"
[ "$failed" -eq 0 ]
