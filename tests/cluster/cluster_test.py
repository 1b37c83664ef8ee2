#!/usr/bin/env python3
"""make cluster-test: three anodmd replicas behind HAProxy on loopback, under load.

Starts PostgreSQL from Debian in a temporary folder (initdb, pg_ctl, on 127.0.0.1 and a
port of its own), three anodmd processes (each with its own SQLite log, on 127.0.0.1,
shipping it to PostgreSQL with --sink and reading the merged history with --history) and
HAProxy from Debian in front (health checks on /readyz, each source hashed to one
replica), then runs a paced load through HAProxy from client threads: every request
carries a unique id and a source. Meanwhile it kills one replica with SIGKILL and starts
it again on the same log (a pod restart), restarts PostgreSQL, and takes another replica
out with SIGTERM alone (its readiness-first drain: /readyz 503 for shutdown_delay_seconds
while it still serves, then it stops) and back. Then it waits for the sinks to ship
everything, reads the merged history through each replica, stops everything and reads
the three logs:

  - every acknowledged score (200) is in exactly one replica's log, once: the replica
    HAProxy named in the answer (X-Anodm-Replica), under the log_id it answered;
  - no request is in two logs, acknowledged or not (HAProxy retries only connections that
    never reached a replica, so nothing is scored twice);
  - no 5xx but those of requests in flight on the replica at the moment it was killed
    (502 from HAProxy: the connection was cut), each counted: none from the SIGTERM, none
    from PostgreSQL's restart; and HAProxy took the SIGTERMed replica out for its
    readiness (a check answered 503) while it still served, not for a refused connection
    (which is what happens with shutdown_delay_seconds 0, where a request sent in that
    instant can fail);
  - while all replicas are up each source is scored by one replica only, and after the
    faults every source is back on the replica it started on (consistent hashing);
  - PostgreSQL holds every acknowledged score exactly once, under (replica, log_id), and
    the history read through each replica (GET /v1/scores, paged; GET /v1/stats) equals
    the union of the three logs.

Then, unless --no-throughput, wrk through HAProxy (least connections) with 1, 2 and 3
replicas, and straight to one replica, THROUGHPUT_SECONDS each. Figures and raw output
go to stdout and, with --out DIR, to DIR. Every load is bounded in time and count;
everything listens on 127.0.0.1 only; every process started is stopped by its pid.
Without PostgreSQL's programs (make pg-deps installs them) the test fails, saying so.
"""
import argparse
import glob
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from gen_wrk_bodies import json_pixels, read_images  # noqa: E402  (the bench's IDX reader)

SOURCES_PER_THREAD = 3   # source tags each client thread takes turns with
SHUTDOWN_DELAY = 2       # the replicas' shutdown_delay_seconds


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print(msg, flush=True)


def pg_program(name):
    """A PostgreSQL program: on PATH, else the newest in Debian's /usr/lib/postgresql."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not versions:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (make pg-deps installs it)")
    return versions[-1]


class Postgres:
    """Debian's PostgreSQL in a folder of its own: initdb, then pg_ctl start and stop, on
    127.0.0.1 and a free port, its socket in that folder, as the user nobody when we are
    root (initdb refuses root). fsync is off: the faults here are anodmd's, and PostgreSQL
    is only ever stopped cleanly."""

    def __init__(self):
        self.initdb, self.pg_ctl, self.psql_bin = (pg_program(n) for n in ("initdb", "pg_ctl", "psql"))
        self.dir = tempfile.mkdtemp(prefix="anodm-cluster-pg.")
        self.as_user = []
        if os.geteuid() == 0:
            import pwd
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
            self.as_user = ["runuser", "-u", "nobody", "--"]
        self.port = free_port()
        self.url = f"postgresql://anodm@127.0.0.1:{self.port}/postgres"
        self.data = os.path.join(self.dir, "data")
        self.run([self.initdb, "-D", self.data, "-A", "trust", "-U", "anodm", "-E", "UTF8",
                  "--no-locale", "--no-sync"])
        self.version = subprocess.run([self.pg_ctl, "--version"], capture_output=True,
                                      text=True).stdout.strip()

    def run(self, argv):
        out = subprocess.run(self.as_user + argv, capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise RuntimeError(f"{os.path.basename(argv[0])} exited {out.returncode}: "
                               f"{(out.stdout + out.stderr).strip()[-500:]}")

    def start(self):
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off")
        self.run([self.pg_ctl, "-D", self.data, "-l", os.path.join(self.dir, "server.log"),
                  "-w", "-t", "60", "-o", opts, "start"])

    def stop(self, mode="fast"):
        self.run([self.pg_ctl, "-D", self.data, "-m", mode, "-w", "-t", "60", "stop"])

    def query(self, sql):
        """Rows of sql as lists of text (psql, unaligned, tab-separated)."""
        out = subprocess.run([self.psql_bin, "-X", "-q", "-A", "-t", "-F", "\t", "-v",
                              "ON_ERROR_STOP=1", "-d", self.url, "-c", sql],
                             capture_output=True, text=True, timeout=60)
        if out.returncode:
            raise RuntimeError(f"psql: {out.stderr.strip()}")
        return [line.split("\t") for line in out.stdout.splitlines() if line]

    def remove(self):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            subprocess.run(self.as_user + [self.pg_ctl, "-D", self.data, "-m", "immediate",
                                           "-w", "-t", "60", "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def get_json(port, path):
    """GET path from 127.0.0.1:port: (status, parsed JSON body or None)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, None
    finally:
        c.close()


def metric(port, name):
    """The value of an unlabelled metric in GET /metrics, or None."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


class Replica:
    """One anodmd process with its log in its own folder; restarted on the same port."""

    def __init__(self, name, anodmd, model, root, pg_url):
        self.name, self.anodmd, self.model, self.pg_url = name, anodmd, model, pg_url
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.db = os.path.join(self.dir, "scores.db")
        self.port = free_port()
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        err = open(os.path.join(self.dir, f"anodmd-{self.starts}.log"), "w")
        # SHUTDOWN_DELAY: HAProxy below takes a replica out after two failed checks 200 ms
        # apart (0.2-0.4 s measured here, under a load average of 10), well within it.
        self.proc = subprocess.Popen(
            [self.anodmd, "--model", f"fashion={self.model}", "--bind", "127.0.0.1",
             "--port", str(self.port), "--db", self.db, "--drain-seconds", "5",
             "--shutdown-delay-seconds", str(SHUTDOWN_DELAY), "--dashboard", "off",
             "--replica-id", self.name, "--sink", self.pg_url, "--history", self.pg_url],
            stdout=subprocess.DEVNULL, stderr=err)
        err.close()
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: anodmd exited {self.proc.returncode}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: not ready after 120 s")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def term(self):
        self.t_term = time.time()
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout=30):
        """After term(): (exit status, seconds from SIGTERM to exit)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        return rc, time.time() - self.t_term

    def stop(self, timeout=30):
        """SIGTERM; (exit status, seconds to exit)."""
        self.term()
        return self.wait(timeout)

    def rows(self):
        """request_id -> [log ids], source -> row count, (log id, request_id, is_anomaly)
        of every row, and the integrity check, from the log."""
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        ids, sources, every = {}, {}, []
        for rid, lid, src, anomaly in db.execute(
                "SELECT request_id, id, source, is_anomaly FROM scores"):
            ids.setdefault(rid, []).append(lid)
            sources[src] = sources.get(src, 0) + 1
            every.append((lid, rid, bool(anomaly)))
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        db.close()
        return ids, sources, every, integrity


HAPROXY_CFG = """\
# HAProxy in front of the anodmd replicas (written by tests/cluster/cluster_test.py).
global
    nbthread 1
    maxconn 2000
    stats socket {sock} mode 600 level admin
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlog-normal          # log what went wrong only
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    # Retry a request only when its connection never reached a replica (refused, reset
    # while connecting): such a request was not scored, so it is safe to send elsewhere.
    # A request cut after it was sent is answered 502, never resent (it may be in a log).
    retries 3
    retry-on conn-failure
    option redispatch 1

# Scores: each source to one replica, by the X-Anodm-Source header or, without it, the
# JSON "source" of the body (buffered: within tune.bufsize, 16 kB, so single samples
# and small batches). A replica that goes down moves only its own sources.
frontend scores
    bind 127.0.0.1:{port}
    option http-buffer-request
    http-request set-var(txn.source) req.hdr(X-Anodm-Source)
    http-request set-var(txn.source) req.body,json_query('$.source') unless {{ var(txn.source) -m found }}
    http-after-response set-header X-Anodm-Replica %[srv_name]
    default_backend anodm

backend anodm
    balance hash var(txn.source)
    hash-type consistent
    option httpchk GET /readyz
    http-check expect status 200
    # Down after 2 failed checks 200 ms apart, or at once on a refused connection.
    default-server inter 200ms fall 2 rise 2 observe layer4 error-limit 1 on-error mark-down
{servers}

# Throughput: least connections, no hashing (wrk sends one body, one source, over and over).
frontend bench
    bind 127.0.0.1:{bench_port}
    default_backend anodm_bench

backend anodm_bench
    balance leastconn
    option httpchk GET /readyz
    default-server inter 200ms fall 2 rise 2
{bench_servers}
"""


class Haproxy:
    def __init__(self, replicas, root):
        self.root = root
        self.port, self.bench_port = free_port(), free_port()
        self.sock = os.path.join(root, "haproxy.sock")
        servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port} check" for r in replicas)
        cfg = HAPROXY_CFG.format(sock=self.sock, port=self.port, bench_port=self.bench_port,
                                 servers=servers, bench_servers=servers)
        self.cfg = os.path.join(root, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write(cfg)
        self.log = open(os.path.join(root, "haproxy.log"), "w")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg], stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def command(self, cmd):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.sock)
            s.sendall(cmd.encode() + b"\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out.decode()

    def status(self, backend="anodm"):
        """server name -> status (UP, DOWN, MAINT, ...) from `show stat`."""
        lines = self.command("show stat").splitlines()
        head = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(head, line.split(",")))
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = row["status"]
        return out

    def wait_status(self, server, want, timeout=30, backend="anodm"):
        t0 = time.time()
        while time.time() - t0 < timeout:
            try:
                if self.status(backend).get(server, "").startswith(want):
                    return time.time() - t0
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"haproxy: {backend}/{server} not {want} after {timeout} s")

    def wait_sessions(self, server, want, timeout=10, backend="anodm"):
        """Wait until backend/server has want current sessions (scur) or fewer."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            lines = self.command("show stat").splitlines()
            head = lines[0].lstrip("# ").split(",")
            for line in lines[1:]:
                row = dict(zip(head, line.split(",")))
                if row.get("pxname") == backend and row.get("svname") == server and \
                        int(row.get("scur") or 0) <= want:
                    return time.time() - t0
            time.sleep(0.02)
        raise RuntimeError(f"haproxy: {backend}/{server} still busy after {timeout} s")

    def down_reason(self, server, backend="anodm", timeout=2):
        """Why HAProxy last took backend/server out, from its log ("" if it did not say)."""
        t0 = time.time()
        while True:
            with open(os.path.join(self.root, "haproxy.log")) as f:
                said = [ln for ln in f if f"Server {backend}/{server} is DOWN, reason:" in ln]
            if said or time.time() - t0 > timeout:
                m = re.search(r"reason: (.*?)(?:, check duration|\. \d+ active)", said[-1]) if said else None
                return m.group(1) if m else ""
            time.sleep(0.05)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Load:
    """Client threads, each on one keep-alive connection to HAProxy, paced to rate
    requests/s in all, until stopped or max_requests are sent; every exchange recorded."""

    def __init__(self, port, images, threads, rate, max_requests):
        self.port, self.images = port, images
        self.threads, self.interval = threads, threads / rate
        self.max_requests = max_requests
        self.stop_flag = threading.Event()
        self.records = []            # (id, source, status, replica, log_id, t_start, t_end)
        self.lock = threading.Lock()
        self.sent = 0

    def client(self, tid):
        rng = random.Random(tid)
        conn = None
        n = 0
        nxt = time.time()
        while not self.stop_flag.is_set():
            with self.lock:
                if self.sent >= self.max_requests:
                    return
                self.sent += 1
            src = f"src-{tid * SOURCES_PER_THREAD + n % SOURCES_PER_THREAD}"
            rid = f"t{tid}-{n}"
            n += 1
            body = json.dumps({"sample": self.images[rng.randrange(len(self.images))],
                               "source": src, "id": rid}, separators=(",", ":"))
            # half the threads name the source in a header too, half only in the body
            headers = {"Content-Type": "application/json"}
            if tid % 2:
                headers["X-Anodm-Source"] = src
            t0 = time.time()
            status, replica, log_id = 0, "", None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                conn.request("POST", "/v1/score", body, headers)
                r = conn.getresponse()
                data = r.read()
                status, replica = r.status, r.getheader("X-Anodm-Replica", "")
                if status == 200:
                    log_id = json.loads(data)["results"][0]["log_id"]
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                self.records.append((rid, src, status, replica, log_id, t0, time.time()))
            nxt += self.interval * (0.5 + rng.random())
            pause = nxt - time.time()
            if pause > 0:
                time.sleep(pause)
            else:
                nxt = time.time()
        if conn is not None:
            conn.close()

    def start(self):
        self.workers = [threading.Thread(target=self.client, args=(i,)) for i in range(self.threads)]
        for w in self.workers:
            w.start()

    def stop(self):
        self.stop_flag.set()
        for w in self.workers:
            w.join()


class Poller:
    """A dashboard polling the merged history through HAProxy while the faults happen:
    GET /v1/scores?since_id=N every 0.2 s, following next_since_id; every answer's status
    and time kept, every record collected. finish() stops it and reads on to the end."""

    def __init__(self, port):
        self.port, self.since, self.records, self.answers = port, 0, [], []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def poll(self):
        t0 = time.time()
        try:
            status, page = get_json(self.port, f"/v1/scores?since_id={self.since}&limit=1000")
        except (OSError, http.client.HTTPException):
            status, page = 0, None
        code = page.get("error", {}).get("code", "") if status != 200 and page else ""
        self.answers.append((status, code, t0, time.time()))
        if status == 200:
            self.records.extend(page["scores"])
            self.since = page["next_since_id"]
            return len(page["scores"])
        return -1

    def run(self):
        while not self.stop_flag.wait(0.2):
            self.poll()

    def finish(self):
        self.stop_flag.set()
        self.thread.join()
        for _ in range(100):
            if self.poll() == 0:
                break
            time.sleep(0.05)


def wrk(url, body, conns, seconds, root, name):
    """Requests/s, p50 and p99 ms, non-2xx and socket errors of one wrk run."""
    lua = os.path.join(HERE, "..", "wrk_score.lua")
    out = os.path.join(root, f"wrk-{name}.txt")
    with open(out, "w") as f:
        subprocess.run(["wrk", "-t", "2", "-c", str(conns), "-d", f"{seconds}s", "--timeout", "5s",
                        "--latency", "-s", lua, url, "--", body], stdout=f, stderr=subprocess.STDOUT,
                       timeout=seconds + 60, check=True)
    text = open(out).read()
    line = next(ln for ln in text.splitlines() if ln.startswith("WRKSTATS"))
    v = {k: int(x) for k, x in (kv.split("=") for kv in line.split()[1:])}
    rps = v["requests"] / (v["duration_us"] / 1e6)
    sock = v["connect"] + v["read"] + v["write"] + v["timeout"]
    return rps, v["p50_us"] / 1000, v["p99_us"] / 1000, v["status"], sock


def read_history(port):
    """The merged history through one replica: every record, paged with since_id (1000 a
    page), and (count, anomalies) of the whole history from GET /v1/stats; with the
    number of reads answered 503 (a connection PostgreSQL's restart broke, found by the
    read that then makes it again), each retried after a quarter of a second."""
    records, since, n503 = [], 0, 0
    stats = None
    while True:
        status, page = get_json(port, f"/v1/scores?since_id={since}&limit=1000")
        if status == 503 and n503 < 40:
            n503 += 1
            time.sleep(0.25)
            continue
        if status != 200:
            raise RuntimeError(f"GET /v1/scores on port {port}: {status} {page}")
        if not page["scores"]:
            break
        records.extend(page["scores"])
        since = page["next_since_id"]
    status, body = get_json(port, "/v1/stats")
    if status == 200:
        m = body["models"][0]["windows"]["all"]
        stats = (m["count"], m["anomalies"])
    return (records, stats), n503


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--anodmd", default="build/anodmd")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", help="keep the raw output (logs, HAProxy's, wrk's) in this folder")
    ap.add_argument("--threads", type=int, default=8, help="client threads")
    ap.add_argument("--rate", type=float, default=300, help="offered requests/s in all")
    ap.add_argument("--max-requests", type=int, default=20000, help="bound on the requests sent")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--throughput-seconds", type=int, default=5)
    ap.add_argument("--throughput-conns", type=int, default=16)
    a = ap.parse_args()

    root = tempfile.mkdtemp(prefix="anodm-cluster.")
    replicas, proxy, pg, load, poller, failures = [], None, None, None, None, []

    def check(ok, what):
        log(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            failures.append(what)

    try:
        log(f"== anodm cluster test: 3 anodmd replicas behind HAProxy, PostgreSQL, on 127.0.0.1; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
        log(f"== machine: {cpu}, {os.cpu_count()} cores; load average "
            f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
        hv = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
        t0 = time.time()
        pg = Postgres()
        pg.start()
        log(f"== {hv}; {pg.version}; model {a.model}")
        path = os.path.join(a.data, "t10k-images-idx3-ubyte.gz")
        images = [json_pixels(im) for im in
                  read_images(path if os.path.exists(path) else path[:-3], 200)]

        replicas = [Replica(f"r{i + 1}", a.anodmd, a.model, root, pg.url) for i in range(3)]
        for r in replicas:
            r.start()
        proxy = Haproxy(replicas, root)
        for r in replicas:
            proxy.wait_status(r.name, "UP")
        log(f"PostgreSQL on port {pg.port}, replicas on ports "
            f"{', '.join(str(r.port) for r in replicas)} (each --sink and --history), HAProxy on "
            f"{proxy.port}: all up in {time.time() - t0:.1f} s")

        # ------------------------------------------------------------ faults under load
        load = Load(proxy.port, images, a.threads, a.rate, a.max_requests)
        poller = Poller(proxy.port)
        events = {}
        load.start()
        poller.thread.start()
        t_load = time.time()
        time.sleep(3)
        events["steady_end"] = time.time()
        victim, drained = replicas[0], replicas[1]
        events["kill"] = time.time()
        victim.kill9()
        down_after = proxy.wait_status(victim.name, "DOWN")
        events["killed_down"] = time.time()
        log(f"kill -9 {victim.name} at {events['kill'] - t_load:.1f} s; HAProxy marked it down "
            f"{down_after * 1000:.0f} ms later")
        time.sleep(1.5)
        t = time.time()
        victim.start()
        up_after = proxy.wait_status(victim.name, "UP")
        log(f"{victim.name} restarted on its log: ready in {time.time() - t - up_after:.2f} s, "
            f"up in HAProxy {up_after * 1000:.0f} ms after")
        time.sleep(1)
        # PostgreSQL restarted under load: scoring goes on into the logs, the sinks' rows
        # wait there and are shipped once it is back.
        t = events["pg_stop"] = time.time()
        pg.stop()
        stopped = time.time()
        time.sleep(1.5)
        waiting = [metric(r.port, "anodmd_sink_backlog_rows") for r in replicas]
        sink_up = [metric(r.port, "anodmd_sink_up") for r in replicas]
        pg.start()
        events["pg_start"] = time.time()
        log(f"PostgreSQL restarted at {t - t_load:.1f} s: stopped in {stopped - t:.2f} s, down "
            f"{time.time() - stopped:.1f} s; meanwhile anodmd_sink_up {sink_up}, backlog rows "
            f"{waiting}")
        check(all(b and b > 0 for b in waiting) and sink_up == [0, 0, 0],
              "while PostgreSQL was down every sink was down with a backlog waiting in its log")
        time.sleep(1)
        # SIGTERM alone, as Kubernetes or systemd sends it: anodmd answers /readyz 503 at
        # once and goes on serving for shutdown_delay_seconds, HAProxy's checks take it
        # out meanwhile, then it closes its port and drains what is in flight.
        drained.term()
        down_after = proxy.wait_status(drained.name, "DOWN")
        rc, secs = drained.wait()
        why = proxy.down_reason(drained.name)
        check(rc == 0 and secs >= SHUTDOWN_DELAY
              and why.startswith("Layer7 wrong status, code: 503"),
              f"{drained.name}: SIGTERM alone under load: HAProxy took it out {down_after * 1000:.0f} "
              f"ms later, for its readiness while it still served (\"{why}\"), not for a "
              f"refused connection; exit {rc} after {secs:.2f} s (the delay of {SHUTDOWN_DELAY} s, "
              f"then the drain)")
        time.sleep(0.5)
        t = time.time()
        drained.start()
        up_after = proxy.wait_status(drained.name, "UP")
        events["all_back"] = time.time()
        log(f"{drained.name} back: ready in {time.time() - t - up_after:.2f} s, up in HAProxy "
            f"{up_after * 1000:.0f} ms after")
        events["final_start"] = time.time()
        time.sleep(3)
        load.stop()
        t_end = time.time()

        # ------------------------------------------------------------ shipped, merged
        t = time.time()
        backlog = [None] * 3
        while time.time() - t < 30:
            backlog = [metric(r.port, "anodmd_sink_backlog_rows") for r in replicas]
            if backlog == [0, 0, 0]:
                break
            time.sleep(0.1)
        check(backlog == [0, 0, 0], f"every sink shipped its backlog: {time.time() - t:.1f} s after "
              f"the load, backlog rows {backlog}")
        poller.finish()
        history, history_503 = {}, {}
        for r in replicas:
            history[r.name], history_503[r.name] = read_history(r.port)

        for r in replicas:
            r.term()
        for r in replicas:
            rc, secs = r.wait()
            check(rc == 0, f"{r.name}: SIGTERM -> exit {rc} in {secs:.2f} s")
        logs, union = {}, {}
        for r in replicas:
            ids, sources, every, integrity = r.rows()
            logs[r.name] = (ids, sources)
            for lid, rid, anomaly in every:
                union[(r.name, lid)] = (rid, anomaly)
            check(integrity == "ok", f"{r.name}: log integrity_check {integrity}, {sum(sources.values())} rows")

        recs = load.records
        acked = [x for x in recs if x[2] == 200]
        by_status = {}
        for x in recs:
            by_status[x[2]] = by_status.get(x[2], 0) + 1
        log(f"load: {len(recs)} requests in {t_end - t_load:.1f} s ({len(recs) / (t_end - t_load):.0f}/s offered "
            f"by {a.threads} threads), statuses {dict(sorted(by_status.items()))} (0: connection failed)")

        where = {}
        for name, (ids, _) in logs.items():
            for rid, lids in ids.items():
                where.setdefault(rid, []).extend((name, lid) for lid in lids)
        bad_ack = [x for x in acked if where.get(x[0]) != [(x[3], x[4])]]
        check(not bad_ack, f"every acknowledged score ({len(acked)}) is in exactly one log, once, in the replica "
              f"that answered, under the log_id it answered ({len(bad_ack)} not)")
        for x in bad_ack[:5]:
            log(f"     {x[0]}: answered by {x[3]} with log_id {x[4]}; in the logs: {where.get(x[0])}")
        twice = [rid for rid, w in where.items() if len(w) > 1]
        check(not twice, f"no request is in two logs or twice in one ({len(twice)} are)")
        sent_ids = {x[0] for x in recs}
        stray = [rid for rid in where if rid not in sent_ids]
        check(not stray, f"every row is of a request the clients sent ({len(stray)} are not)")
        unacked = [x for x in recs if x[2] != 200]
        committed = sum(1 for x in unacked if x[0] in where)
        log(f"not acknowledged: {len(unacked)}, of which {committed} committed to a log before the "
            f"connection was cut (a client retrying with the same id would find them there)")

        # Failures: only requests sent to the killed replica between its death and HAProxy
        # marking it down (in flight, or on a kept-alive server connection not yet seen
        # closed). HAProxy answers such a request 502, or, when it came on a kept-alive
        # client connection, closes that connection without an answer (status 0 here), as
        # a server closing a kept-alive connection would; such a request is in no log but
        # the killed replica's. None from the SIGTERM, none from PostgreSQL's restart.
        errors = [x for x in recs if x[2] >= 500 or x[2] == 0]
        in_flight = [x for x in errors
                     if (x[2] == 0 or (x[2] == 502 and x[3] == victim.name))
                     and x[5] <= events["killed_down"] and x[6] >= events["kill"]
                     and all(name == victim.name for name, _ in where.get(x[0], []))]
        other = [x for x in errors if x not in in_flight]
        n502 = sum(1 for x in in_flight if x[2] == 502)
        check(not other, f"5xx and failed exchanges: {len(errors)}, all of requests in flight on "
              f"{victim.name} when it was killed ({n502} answered 502, {len(in_flight) - n502} "
              f"connections closed unanswered; others: {len(other)})")
        for x in other[:5]:
            log(f"     {x[0]}: status {x[2]} from '{x[3]}', {x[5] - t_load:.3f}-{x[6] - t_load:.3f} s")

        # PostgreSQL: every acknowledged score once, and nothing but the logs' rows.
        rows = pg.query("SELECT replica_id, local_id, request_id, is_anomaly FROM anodm_scores")
        in_pg = {}
        for rep, lid, rid, anomaly in rows:
            in_pg.setdefault((rep, int(lid)), []).append((rid, anomaly == "t"))
        per_request = {}
        for (rep, lid), got in in_pg.items():
            for rid, _ in got:
                per_request.setdefault(rid, []).append((rep, lid))
        bad_pg = [x for x in acked if per_request.get(x[0]) != [(x[3], x[4])]]
        check(not bad_pg, f"PostgreSQL holds every acknowledged score ({len(acked)}) exactly once, "
              f"under (replica, log_id) answered ({len(bad_pg)} not)")
        for x in bad_pg[:5]:
            log(f"     {x[0]}: answered by {x[3]} with log_id {x[4]}; in PostgreSQL: {per_request.get(x[0])}")
        pg_union = {k: v[0] for k, v in in_pg.items() if len(v) == 1}
        check(len(rows) == len(union) and pg_union == union,
              f"PostgreSQL's {len(rows)} rows are the union of the three logs ({len(union)} rows), "
              f"column for column of (replica, local id, request id, anomaly)")

        # The merged history read through each replica: GET /v1/scores paged, /v1/stats.
        anomalies = sum(1 for _, an in union.values() if an)
        for r in replicas:
            got, stats = history[r.name]
            keyed = {(x["replica_id"], x["local_id"]): (x["id"], x["is_anomaly"]) for x in got}
            ids = [x["log_id"] for x in got]
            check(len(got) == len(union) and keyed == union and ids == sorted(set(ids)),
                  f"history through {r.name}: {len(got)} records paged by since_id "
                  f"({history_503[r.name]} answered 503 first), equal to the union of the logs, "
                  f"ids increasing")
            check(stats == (len(union), anomalies), f"GET /v1/stats through {r.name}: "
                  f"{stats[0]} scores, {stats[1]} anomalies (the logs: {len(union)}, {anomalies})")

        # The poller: its cursor missed nothing and saw nothing twice, through all of it;
        # refused only while PostgreSQL was down (503 log_unavailable; and for up to a
        # second after, the history's pause between connection attempts, pghistory.h), or
        # by the killed replica's in-flight window.
        keyed = {}
        for x in poller.records:
            keyed.setdefault((x["replica_id"], x["local_id"]), []).append((x["id"], x["is_anomaly"]))
        once = {k: v[0] for k, v in keyed.items() if len(v) == 1}
        check(len(poller.records) == len(union) and once == union,
              f"a poller of the history through HAProxy (since_id, every 0.2 s) saw every row "
              f"once: {len(poller.records)} records, the logs {len(union)}")
        polls = {}
        for st, code, _, _ in poller.answers:
            polls[f"{st} {code}".strip()] = polls.get(f"{st} {code}".strip(), 0) + 1
        refused = [x for x in poller.answers if x[0] != 200 and not (
            (x[0] == 503 and x[1] == "log_unavailable" and x[3] >= events["pg_stop"]
             and x[2] <= events["pg_start"] + 1.0) or
            (x[0] in (0, 502) and x[2] <= events["killed_down"] and x[3] >= events["kill"]))]
        late = [x for x in poller.answers if x[0] == 503 and x[2] > events["pg_start"]]
        check(not refused, f"the poller's {len(poller.answers)} reads: {polls}; refused only "
              f"while PostgreSQL was down ({len(late)} of them in the second after it was back), "
              f"or cut by the kill ({len(refused)} other)")
        for x in refused[:5]:
            log(f"     poll: {x[0]} {x[1]} at {x[2] - t_load:.3f}-{x[3] - t_load:.3f} s "
                f"(PostgreSQL down {events['pg_stop'] - t_load:.3f}-{events['pg_start'] - t_load:.3f} s)")

        # Sticky routing: one replica per source while all are up; the same one again at the end.
        def owners(t_a, t_b):
            own = {}
            for x in acked:
                if t_a <= x[5] and x[6] <= t_b:
                    own.setdefault(x[1], set()).add(x[3])
            return own
        first, last = owners(t_load, events["steady_end"]), owners(events["final_start"], t_end)
        split = {s: o for s, o in {**first, **last}.items() if len(o) > 1}
        n_sources = a.threads * SOURCES_PER_THREAD
        check(len(first) == n_sources and not split,
              f"sticky: each of the {len(first)} sources on one replica while all were up ({len(split)} split)")
        moved = [s for s in first if s in last and first[s] != last[s]]
        check(len(last) == n_sources and not moved,
              f"sticky: after the faults every source is back on its first replica ({len(moved)} moved)")
        spread = {r.name: sum(1 for o in first.values() if r.name in o) for r in replicas}
        log(f"sources per replica: {spread}")
        lat = sorted(x[6] - x[5] for x in acked)
        if lat:
            log(f"latency of acknowledged scores through HAProxy: p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
                f"p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms")

        # ------------------------------------------------------------ throughput
        if not a.no_throughput:
            for r in replicas:
                r.start()
            for r in replicas:
                proxy.wait_status(r.name, "UP", backend="anodm_bench")
            body = os.path.join(root, "single.json")
            with open(body, "w") as f:
                json.dump({"sample": images[0], "source": "bench"}, f, separators=(",", ":"))
            s = a.throughput_seconds
            log(f"\nthroughput: wrk, 2 threads, {a.throughput_conns} connections, {s} s a run, one "
                f"Fashion-MNIST image a request; everything shares the {os.cpu_count()} cores")
            log("| path | replicas | requests/s | p50 ms | p99 ms | non-2xx | socket errors "
                "| CPU s: anodmd / HAProxy |")
            log("|---|---:|---:|---:|---:|---:|---:|---:|")
            url = f"http://127.0.0.1:{replicas[0].port}/v1/score"
            c0 = cpu_seconds(replicas[0].proc.pid)
            rps, p50, p99, st, so = wrk(url, body, a.throughput_conns, s, root, "direct")
            log(f"| straight to anodmd | 1 | {rps:.0f} | {p50:.2f} | {p99:.2f} | {st} | {so} "
                f"| {cpu_seconds(replicas[0].proc.pid) - c0:.1f} / - |")
            for n in (1, 2, 3):
                for i, r in enumerate(replicas):
                    proxy.command(f"set server anodm_bench/{r.name} state {'ready' if i < n else 'maint'}")
                for r in replicas[:n]:
                    proxy.wait_status(r.name, "UP", backend="anodm_bench")
                time.sleep(0.5)
                cs = [cpu_seconds(r.proc.pid) for r in replicas] + [cpu_seconds(proxy.proc.pid)]
                url = f"http://127.0.0.1:{proxy.bench_port}/v1/score"
                rps, p50, p99, st, so = wrk(url, body, a.throughput_conns, s, root, f"haproxy-{n}")
                ce = [cpu_seconds(r.proc.pid) for r in replicas] + [cpu_seconds(proxy.proc.pid)]
                used = [e - b for b, e in zip(cs, ce)]
                log(f"| through HAProxy | {n} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {st} | {so} "
                    f"| {sum(used[:3]):.1f} / {used[3]:.1f} |")
                check(st == 0 and so == 0, f"HAProxy with {n} replica(s): no errors")
            for r in replicas:
                r.stop()
    except Exception as e:  # noqa: BLE001  (any set-up failure is the test's failure)
        failures.append(f"{type(e).__name__}: {e}")
        log(f"FAIL {type(e).__name__}: {e}")
    finally:
        for client in (load, poller):   # stopped already, unless something failed
            if client and not client.stop_flag.is_set():
                client.stop_flag.set()
                for th in getattr(client, "workers", []) + [getattr(client, "thread", None)]:
                    if th and th.is_alive():
                        th.join()
        for r in replicas:
            if r.proc and r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait()
        if proxy:
            proxy.stop()
        if a.out and pg:
            os.makedirs(a.out, exist_ok=True)
            server_log = os.path.join(pg.dir, "server.log")
            if os.path.exists(server_log):
                shutil.copy(server_log, os.path.join(a.out, "postgresql.log"))
        if pg:
            pg.remove()
        if a.out:
            os.makedirs(a.out, exist_ok=True)
            for r in replicas:
                for f in sorted(os.listdir(r.dir)):
                    if f.endswith(".log"):
                        shutil.copy(os.path.join(r.dir, f), os.path.join(a.out, f"{r.name}-{f}"))
            for f in os.listdir(root):
                if f.endswith((".log", ".cfg", ".txt")):
                    shutil.copy(os.path.join(root, f), a.out)
        shutil.rmtree(root, ignore_errors=True)
    log(f"cluster: {'FAILED: ' + '; '.join(failures) if failures else 'every check passed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
