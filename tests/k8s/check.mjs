// Offline check of anodmd's Kubernetes manifests (deploy/k8s; run by tests/k8s/check.sh,
// part of `make test`). Each file is a YAML stream, as `kubectl kustomize` renders an
// overlay. Every object is checked:
//   - against the Kubernetes schema of its kind (the npm package kubernetes-models, whose
//     validators are generated from the API's OpenAPI document); KServe's ServingRuntime
//     has its containers and volumes checked against the core schemas;
//   - for unknown fields, which the API server drops without a word (a misspelled
//     `readinesProbe` would leave a pod with no readiness probe): the OpenAPI schemas do
//     not forbid them, so every object is validated through a proxy that records which
//     fields the validator looked up, and a field it never looked up is not in the schema;
//   - for the Pod Security "restricted" profile and read-only root filesystem, on every
//     container of every pod template;
//   - for the manifest's own agreements: probes on the health routes and named ports that
//     exist, the Service's ports and selector, a wait before the port closes (anodmd's
//     shutdown_delay_seconds, or a preStop sleep) and the grace period against it and
//     drain_seconds, the recommended labels, and (with --anodmd) the ConfigMap and the
//     container's environment read by `anodmd --check-config` itself;
//   - for secrets kept out of the manifest: the PostgreSQL URIs (sink, history) only from a
//     Secret, no password in a literal value or a ConfigMap; the replica id, when set, the
//     pod's name (downward API); with --history, the replicas must ship to and read the
//     merged history that way;
//   - the Prometheus Operator's objects: a PodMonitor that selects the pods on a port they
//     have, alert rules on metric names anodmd has (daemon/metrics.c).
// Usage: node check.mjs [--anodmd BIN --bundle FILE] [--labels] [--history] FILE...
// Prints one line per problem and exits 1 if there is any; else prints what it checked.
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";

const args = process.argv.slice(2);
const opt = { files: [], labels: false };
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--anodmd") opt.anodmd = args[++i];
  else if (args[i] === "--bundle") opt.bundle = args[++i];
  else if (args[i] === "--labels") opt.labels = true;
  else if (args[i] === "--history") opt.history = true;
  else opt.files.push(args[i]);
}
if (!opt.files.length || !opt.anodmd !== !opt.bundle) {
  console.error("usage: node check.mjs [--anodmd BIN --bundle FILE] [--labels] [--history] FILE...");
  process.exit(2);
}

const problems = [];
const problem = (where, what) => problems.push(`${where}: ${what}`);

// ---------------------------------------------------------------- schemas

// The packages of model classes: Kubernetes' own, and the Prometheus Operator's.
const MODELS = ["kubernetes-models", "@kubernetes-models/prometheus-operator"];

// The generated validator of a model class, found from the class's module, which imports
// it from its package's _schemas/ (apps/v1 StatefulSet -> IoK8sApiAppsV1StatefulSet).
async function schemaOf(apiVersion, kind) {
  const groupVersion = apiVersion.includes("/") ? apiVersion : `v1`;
  for (const pkg of MODELS) {
    let url;
    try {
      url = import.meta.resolve(`${pkg}/${groupVersion}/${kind}`);
    } catch {
      continue;
    }
    const from = readFileSync(fileURLToPath(url), "utf8").match(/"(\.[^"]*\/_schemas\/\w+\.js)"/);
    return from ? (await import(new URL(from[1], url))).validate : null;
  }
  return null;
}

async function schemaNamed(name) {
  return (await import(`kubernetes-models/_schemas/${name}`)).validate;
}

const field = (path, k) => (path ? `${path}.${k}` : k);

// A copy of value whose every object records the fields read from it; the records (path,
// object, fields read) go to out.
function tracked(value, path, out) {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v, i) => tracked(v, `${path}[${i}]`, out));
  const copy = {};
  for (const [k, v] of Object.entries(value)) copy[k] = tracked(v, field(path, k), out);
  const read = new Set();
  out.push({ path, keys: Object.keys(value), read });
  return new Proxy(copy, {
    get(t, k, r) {
      if (typeof k === "string") read.add(k);
      return Reflect.get(t, k, r);
    },
    has(t, k) {
      if (typeof k === "string") read.add(k);
      return Reflect.has(t, k);
    },
    getOwnPropertyDescriptor(t, k) {
      if (typeof k === "string") read.add(k);
      return Reflect.getOwnPropertyDescriptor(t, k);
    },
  });
}

// Validate value at path with a generated validator: schema errors and unknown fields.
function validateWith(validate, value, where, path) {
  const records = [];
  const ok = validate(tracked(value, path, records));
  if (!ok)
    for (const e of validate.errors || [])
      problem(where, `${path}${e.instancePath.replaceAll("/", ".")}: ${e.keyword} ${JSON.stringify(e.params)}`.replace(/^\./, ""));
  const unknown = records.flatMap((r) => r.keys.filter((k) => !r.read.has(k)).map((k) => field(r.path, k)));
  // the outermost only: what lies under an unknown field was not looked at either
  for (const u of unknown.sort())
    if (!unknown.some((v) => u.startsWith(v + ".") || u.startsWith(v + "[")))
      problem(where, `unknown field ${u}`);
}

// Parts of custom resources that are core types: [path to an array, schema of each item].
const EMBEDDED = {
  "serving.kserve.io/v1alpha1/ServingRuntime": [
    ["spec.containers", "IoK8sApiCoreV1Container"],
    ["spec.volumes", "IoK8sApiCoreV1Volume"],
  ],
  "serving.kserve.io/v1beta1/InferenceService": [],
};

const at = (obj, path) => path.split(".").reduce((o, k) => (o == null ? o : o[k]), obj);

async function checkSchema(obj, where) {
  const key = `${obj.apiVersion}/${obj.kind}`;
  if (key in EMBEDDED) {
    for (const [path, schema] of EMBEDDED[key]) {
      const validate = await schemaNamed(schema);
      (at(obj, path) || []).forEach((item, i) => validateWith(validate, item, where, `${path}[${i}]`));
    }
    return;
  }
  const validate = await schemaOf(obj.apiVersion, obj.kind);
  if (!validate) return problem(where, `no schema for ${key}`);
  validateWith(validate, obj, where, "");
}

// ---------------------------------------------------------------- pod rules

// The pod spec of an object that makes pods, and its containers (with the pod-level
// security context as a fallback for the container-level fields the profile allows at
// either level).
function podOf(obj) {
  if (obj.kind === "Pod") return obj.spec;
  if (["StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job"].includes(obj.kind))
    return obj.spec?.template?.spec;
  if (obj.kind === "ServingRuntime") return obj.spec;
  return null;
}

const SAFE_VOLUMES = ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"];

// Pod Security Standards, "restricted" (Kubernetes 1.25 on), plus a read-only root
// filesystem and resources, on every container.
function checkRestricted(pod, where) {
  const psc = pod.securityContext || {};
  for (const f of ["hostNetwork", "hostPID", "hostIPC"])
    if (pod[f]) problem(where, `restricted: ${f} is set`);
  for (const v of pod.volumes || []) {
    const type = Object.keys(v).find((k) => k !== "name");
    if (!SAFE_VOLUMES.includes(type)) problem(where, `restricted: volume ${v.name} is ${type}`);
  }
  const containers = [...(pod.initContainers || []), ...(pod.containers || [])];
  if (!containers.length) problem(where, "no containers");
  for (const c of containers) {
    const sc = c.securityContext || {};
    const w = `${where}: container ${c.name}`;
    if (sc.allowPrivilegeEscalation !== false) problem(w, "restricted: allowPrivilegeEscalation is not false");
    if (sc.privileged) problem(w, "restricted: privileged");
    if (!(sc.capabilities?.drop || []).includes("ALL")) problem(w, "restricted: capabilities do not drop ALL");
    for (const cap of sc.capabilities?.add || [])
      if (cap !== "NET_BIND_SERVICE") problem(w, `restricted: adds capability ${cap}`);
    if ((sc.runAsNonRoot ?? psc.runAsNonRoot) !== true) problem(w, "restricted: runAsNonRoot is not true");
    if ((sc.runAsUser ?? psc.runAsUser) === 0) problem(w, "restricted: runAsUser is 0");
    const seccomp = (sc.seccompProfile ?? psc.seccompProfile)?.type;
    if (!["RuntimeDefault", "Localhost"].includes(seccomp))
      problem(w, `restricted: seccompProfile is ${seccomp ?? "unset"}`);
    for (const p of c.ports || []) if (p.hostPort) problem(w, "restricted: hostPort");
    if (sc.readOnlyRootFilesystem !== true) problem(w, "readOnlyRootFilesystem is not true");
    const r = c.resources || {};
    for (const [kind, what] of [["requests", "cpu"], ["requests", "memory"], ["limits", "memory"]])
      if (!r[kind]?.[what]) problem(w, `no resources.${kind}.${what}`);
  }
}

// anodmd's own container: probes on the health routes through ports it declares, its
// port where ANODMD_PORT says, a wait for the endpoints to go before the port closes, and
// a grace period that outlasts that wait plus the drain.
function checkAnodmd(c, pod, where, conf) {
  const w = `${where}: container ${c.name}`;
  const ports = new Map((c.ports || []).map((p) => [p.name, p.containerPort]));
  const env = Object.fromEntries((c.env || []).map((e) => [e.name, e.value]));
  if (String(env.ANODMD_PORT) !== String((c.ports || [])[0]?.containerPort))
    problem(w, `ANODMD_PORT ${env.ANODMD_PORT} is not the container port ${(c.ports || [])[0]?.containerPort}`);
  const routes = { startupProbe: ["/healthz", "/v2/health/live"],
                   readinessProbe: ["/readyz", "/v2/health/ready"],
                   livenessProbe: ["/healthz", "/v2/health/live"] };
  for (const [probe, paths] of Object.entries(routes)) {
    const p = c[probe];
    if (!p) {
      if (probe !== "startupProbe" || pod !== null) problem(w, `no ${probe}`);
      continue;
    }
    if (!paths.includes(p.httpGet?.path)) problem(w, `${probe} is not on ${paths.join(" or ")}`);
    const port = p.httpGet?.port;
    if (typeof port === "string" ? !ports.has(port) : ![...ports.values()].includes(port))
      problem(w, `${probe} port ${port} is not a port of the container`);
  }
  if (pod === null) return;     // a KServe runtime: KServe owns the pod's lifecycle
  // The wait for the endpoints to go before the port closes: anodmd's shutdown delay after
  // SIGTERM, or a preStop sleep before it (either, or both).
  const hook = c.lifecycle?.preStop;
  const sleep = hook?.exec?.command;
  const preStop = !hook ? 0 : sleep && /sleep$/.test(sleep[0]) ? Number(sleep[1]) : NaN;
  if (Number.isNaN(preStop)) problem(w, "a preStop hook that is not a sleep");
  if (!conf) return;
  const wait = preStop + conf.shutdown_delay_seconds;
  if (!(wait >= 3))
    problem(w, `the port closes ${wait} s after the pod is told to stop (preStop ${preStop} s + shutdown_delay_seconds ${conf.shutdown_delay_seconds} s): under 3 s, before the endpoints are gone`);
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  if (!(grace > wait + conf.drain_seconds + 5))
    problem(w, `terminationGracePeriodSeconds ${grace} is not above preStop ${preStop} s + shutdown_delay_seconds ${conf.shutdown_delay_seconds} s + drain_seconds ${conf.drain_seconds} s + 5 s`);
}

// ---------------------------------------------------------------- secrets and pod facts

// A PostgreSQL connection URI holding a password (USER:PASSWORD@, or password=...).
const PG_PASSWORD = /postgres(?:ql)?:\/\/[^\s/@]*:[^\s/@]*@|postgres(?:ql)?:\/\/\S*[?&]password=/;
// The settings that hold one (anodmd's sink and history), as environment variables.
const PG_URIS = ["ANODMD_SINK", "ANODMD_HISTORY"];
// What stands for a Secret's URI when anodmd reads the container's environment.
const PG_PLACEHOLDER = "postgresql://anodm:k8s-check-placeholder@postgresql.invalid:5432/anodm";

// The name and namespace the downward API gives the object's first pod (a StatefulSet's
// anodmd-0).
const podFacts = (obj) => ({ "metadata.name": `${obj.metadata?.name}-0`,
                             "metadata.namespace": obj.metadata?.namespace || "default" });

// The PostgreSQL URI only from a Secret and no password anywhere else in the container;
// the replica id, when set, the pod's name (replicas sharing one would take each other's
// rows for resends and the sink would stop); the payload log's namespace the pod's. With
// --history, the sink, the history and the replica id must be set that way.
function checkSecrets(c, where) {
  const w = `${where}: container ${c.name}`;
  const env = new Map((c.env || []).map((e) => [e.name, e]));
  for (const e of c.env || []) {
    if (e.value !== undefined && PG_URIS.includes(e.name))
      problem(w, `${e.name} is a literal value: take the PostgreSQL URI from a Secret (valueFrom.secretKeyRef)`);
    else if (e.value !== undefined && (e.name === "PGPASSWORD" || PG_PASSWORD.test(e.value)))
      problem(w, `${e.name}: a PostgreSQL password in a literal value: take it from a Secret (valueFrom.secretKeyRef)`);
  }
  for (const a of [...(c.command || []), ...(c.args || [])])
    if (PG_PASSWORD.test(a)) problem(w, "a PostgreSQL password on the command line: take the URI from a Secret");
  const field = (n) => env.get(n)?.valueFrom?.fieldRef?.fieldPath;
  if (env.has("ANODMD_REPLICA_ID") && field("ANODMD_REPLICA_ID") !== "metadata.name")
    problem(w, "ANODMD_REPLICA_ID is not the pod's name (valueFrom.fieldRef metadata.name)");
  if (env.has("ANODMD_PAYLOAD_LOG_NAMESPACE") && field("ANODMD_PAYLOAD_LOG_NAMESPACE") !== "metadata.namespace")
    problem(w, "ANODMD_PAYLOAD_LOG_NAMESPACE is not the pod's namespace (valueFrom.fieldRef metadata.namespace)");
  if (!opt.history) return;
  for (const n of PG_URIS)
    if (!env.get(n)?.valueFrom?.secretKeyRef) problem(w, `${n} is not taken from a Secret: the replicas do not use the merged history`);
  if (field("ANODMD_REPLICA_ID") !== "metadata.name") problem(w, "ANODMD_REPLICA_ID is not set from the pod's name");
}

// ---------------------------------------------------------------- anodmd's own reading

// `anodmd --check-config` on the ConfigMap's anodmd.conf with the container's environment
// (the test bundle in place of the models; a generated key file in place of a Secret's,
// a placeholder URI with a password in place of a Secret's PostgreSQL URI, the pod's name
// and namespace as the downward API would give them): the effective settings, or null
// with a problem.
function anodmdConfig(c, configMaps, pod, where, facts) {
  const dir = mkdtempSync(join(tmpdir(), "anodm-k8s-"));
  try {
    const env = { PATH: process.env.PATH };
    for (const e of c.env || []) {
      if (e.value !== undefined) env[e.name] = e.value;
      else if (e.valueFrom?.secretKeyRef) env[e.name] = PG_URIS.includes(e.name) ? PG_PLACEHOLDER : "k8s-check-secret";
      else if (facts[e.valueFrom?.fieldRef?.fieldPath]) env[e.name] = facts[e.valueFrom.fieldRef.fieldPath];
    }
    if (env.ANODMD_API_KEYS_FILE) {
      env.ANODMD_API_KEYS_FILE = join(dir, "api_keys");
      writeFileSync(env.ANODMD_API_KEYS_FILE, "k8s-check-key-0123456789abcdef\n", { mode: 0o600 });
    }
    const cli = [...(c.args || [])];
    const at = cli.indexOf("--config");
    if (at >= 0) {
      // the file named, from the ConfigMap mounted over its folder
      const path = cli[at + 1];
      const mount = (c.volumeMounts || []).find((m) => path.startsWith(m.mountPath + "/"));
      const vol = (pod?.volumes || []).find((v) => v.name === mount?.name);
      const data = configMaps.get(vol?.configMap?.name)?.[path.slice(mount.mountPath.length + 1)];
      if (data === undefined) {
        problem(where, `--config ${path}: no ConfigMap key mounted there`);
        return null;
      }
      cli[at + 1] = join(dir, "anodmd.conf");
      writeFileSync(cli[at + 1], data);
    }
    const name = (env.ANODMD_MODEL || "model").split("=")[0].replace("{{.Name}}", "model");
    delete env.ANODMD_MODEL;
    const run = spawnSync(opt.anodmd, [...cli, "--model", `${name}=${opt.bundle}`, "--check-config"],
                          { env, encoding: "utf8" });
    if (run.status !== 0) {
      problem(where, `anodmd --check-config: exit ${run.status}: ${(run.stderr || "").trim().split("\n").pop()}`);
      return null;
    }
    if ((run.stdout + run.stderr).includes("k8s-check-placeholder"))
      problem(where, "anodmd --check-config printed the PostgreSQL password");
    const conf = {};
    for (const m of run.stdout.matchAll(/^(\w+) = (.*)$/gm)) conf[m[1]] = /^\d+$/.test(m[2]) ? Number(m[2]) : m[2];
    return conf;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// What anodmd made of the environment: the history from the Secret, under the pod's name.
function checkSettings(conf, facts, w) {
  if (opt.history) {
    for (const k of ["sink", "history"])
      if (!String(conf[k] || "").startsWith("postgresql://")) problem(w, `anodmd's ${k} is "${conf[k] ?? ""}", not the Secret's URI`);
    if (conf.replica_id !== facts["metadata.name"])
      problem(w, `anodmd's replica_id is ${conf.replica_id}, not the pod's name ${facts["metadata.name"]}`);
  }
  if (conf.payload_log_url && conf.payload_log_namespace !== facts["metadata.namespace"])
    problem(w, `the payload log's namespace is ${conf.payload_log_namespace}, not the pod's ${facts["metadata.namespace"]}`);
}

// The metric names anodmd's /metrics has, from daemon/metrics.c (histograms' series too).
function anodmdMetrics() {
  const src = readFileSync(new URL("../../daemon/metrics.c", import.meta.url), "utf8");
  const names = new Set();
  for (const m of src.matchAll(/\b(anodmd_\w+)/g))
    for (const suffix of ["", "_bucket", "_sum", "_count"]) names.add(m[1] + suffix);
  return names;
}

// The Prometheus Operator's objects: a PodMonitor selects the StatefulSet's pods on one
// of their ports; every anodmd metric an alert rule names exists.
function checkMonitoring(objs, file) {
  const set = objs.find((o) => o.kind === "StatefulSet");
  for (const pm of objs.filter((o) => o.kind === "PodMonitor")) {
    if (!set) continue;
    const where = `${file}: PodMonitor/${pm.metadata.name}`;
    const podLabels = set.spec.template.metadata?.labels || {};
    const sel = pm.spec.selector?.matchLabels || {};
    if (!Object.keys(sel).length || !Object.entries(sel).every(([k, v]) => podLabels[k] === v))
      problem(where, "selects no pod of the set");
    const ports = new Set(set.spec.template.spec.containers.flatMap((c) => (c.ports || []).map((p) => p.name)));
    for (const e of pm.spec.podMetricsEndpoints || [])
      if (!ports.has(e.port)) problem(where, `port ${e.port} is no container port`);
  }
  const rules = objs.filter((o) => o.kind === "PrometheusRule");
  if (!rules.length) return;
  const known = anodmdMetrics();
  for (const r of rules)
    for (const g of r.spec.groups || [])
      for (const rule of g.rules || [])
        for (const m of String(rule.expr).matchAll(/\banodmd_\w+/g))
          if (!known.has(m[0]))
            problem(`${file}: PrometheusRule/${r.metadata.name}`, `${rule.alert || rule.record}: no metric ${m[0]} in daemon/metrics.c`);
}

// ---------------------------------------------------------------- one stream

const RECOMMENDED = ["app.kubernetes.io/name", "app.kubernetes.io/instance",
                     "app.kubernetes.io/component", "app.kubernetes.io/part-of",
                     "app.kubernetes.io/managed-by"];

async function checkStream(file) {
  const docs = YAML.parseAllDocuments(readFileSync(file, "utf8"));
  const objs = [];
  for (const d of docs) {
    if (d.errors.length) problem(file, `YAML: ${d.errors[0].message}`);
    const o = d.toJS();
    if (o) objs.push(o);
  }
  const configMaps = new Map(objs.filter((o) => o.kind === "ConfigMap").map((o) => [o.metadata.name, o.data || {}]));
  const byKind = (k) => objs.filter((o) => o.kind === k);
  for (const obj of objs) {
    const where = `${file}: ${obj.kind}/${obj.metadata?.name}`;
    await checkSchema(obj, where);
    if (opt.labels && obj.kind !== "Namespace")
      for (const l of RECOMMENDED)
        if (!obj.metadata?.labels?.[l]) problem(where, `no label ${l}`);
    const pod = podOf(obj);
    if (!pod) continue;
    checkRestricted(pod, where);
    const facts = podFacts(obj);
    for (const c of pod.containers || []) {
      if (!/anodmd$/.test(c.command?.[0] || "")) continue;
      const conf = opt.anodmd ? anodmdConfig(c, configMaps, obj.kind === "ServingRuntime" ? null : pod, where, facts) : null;
      checkAnodmd(c, obj.kind === "ServingRuntime" ? null : pod, where, conf);
      checkSecrets(c, where);
      if (conf) checkSettings(conf, facts, `${where}: container ${c.name}`);
    }
  }
  for (const [name, data] of configMaps)
    for (const [key, text] of Object.entries(data))
      if (PG_PASSWORD.test(text))
        problem(`${file}: ConfigMap/${name}`, `${key}: a PostgreSQL password in a ConfigMap: take the URI from a Secret`);
  // The Services reach the StatefulSet's pods through ports they declare, the PDB and the
  // autoscaler name it, and every volume it mounts exists.
  for (const set of byKind("StatefulSet")) {
    const tpl = set.spec.template;
    const podLabels = tpl.metadata?.labels || {};
    const names = new Set(tpl.spec.containers.flatMap((c) => (c.ports || []).map((p) => p.name)));
    const where = `${file}: StatefulSet/${set.metadata.name}`;
    const selects = (sel) => sel && Object.entries(sel).every(([k, v]) => podLabels[k] === v);
    if (!selects(set.spec.selector?.matchLabels)) problem(where, "selector does not match the pod labels");
    if (!byKind("Service").some((s) => s.metadata.name === set.spec.serviceName && s.spec.clusterIP === "None"))
      problem(where, `serviceName ${set.spec.serviceName} is not a headless Service here`);
    for (const s of byKind("Service")) {
      if (!selects(s.spec.selector)) problem(`${file}: Service/${s.metadata.name}`, "selector does not match the pods");
      for (const p of s.spec.ports)
        if (typeof p.targetPort === "string" && !names.has(p.targetPort))
          problem(`${file}: Service/${s.metadata.name}`, `targetPort ${p.targetPort} is no container port`);
    }
    for (const b of byKind("PodDisruptionBudget"))
      if (!selects(b.spec.selector?.matchLabels)) problem(`${file}: PodDisruptionBudget/${b.metadata.name}`, "selects no pod of the set");
    for (const h of byKind("HorizontalPodAutoscaler"))
      if (h.spec.scaleTargetRef.kind !== "StatefulSet" || h.spec.scaleTargetRef.name !== set.metadata.name)
        problem(`${file}: HorizontalPodAutoscaler/${h.metadata.name}`, "does not scale the StatefulSet");
    if (byKind("HorizontalPodAutoscaler").length && set.spec.replicas !== undefined)
      problem(where, "replicas is set beside an autoscaler (each apply would reset the count)");
    const vols = new Set([...(tpl.spec.volumes || []), ...(set.spec.volumeClaimTemplates || []).map((v) => v.metadata)]
                         .map((v) => v.name));
    for (const c of tpl.spec.containers)
      for (const m of c.volumeMounts || []) if (!vols.has(m.name)) problem(where, `mounts ${m.name}, which is no volume`);
    for (const v of tpl.spec.volumes || []) {
      if (v.configMap && !configMaps.has(v.configMap.name)) problem(where, `ConfigMap ${v.configMap.name} is not here`);
      if (v.persistentVolumeClaim && !byKind("PersistentVolumeClaim").some((p) => p.metadata.name === v.persistentVolumeClaim.claimName))
        problem(where, `PersistentVolumeClaim ${v.persistentVolumeClaim.claimName} is not here`);
    }
  }
  checkMonitoring(objs, file);
  return objs.length;
}

let n = 0;
for (const f of opt.files) n += await checkStream(f);
for (const p of problems) console.log(p);
if (problems.length) {
  console.log(`k8s check: ${problems.length} problem(s) in ${n} objects`);
  process.exit(1);
}
console.log(`k8s check: ${n} objects in ${opt.files.length} files: schemas, no unknown fields, restricted profile` +
            `${opt.anodmd ? ", anodmd --check-config" : ""}: ok`);
