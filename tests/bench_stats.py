#!/usr/bin/env python3
"""bench_stats.py — what GET /v1/stats costs on a big score log.

Builds a log of ROWS rows (two models, scores over ten days, 1% anomalies) in the schema
anodmd writes, then measures:
  - the summary as anodmd computed it before log schema 3 (every window sorted the
    model's rows with a window function), run here with Python's sqlite3 on the same
    file, as the reference;
  - GET /v1/stats answered by anodmd on that log (schema 3: index reads only);
  - anodmd's start on the log written by schema 2, which builds the two indexes.
Usage: bench_stats.py ANODMD MODEL [ROWS]   (Python 3 standard library only)
"""
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

ANODMD, MODEL = sys.argv[1], sys.argv[2]
ROWS = int(sys.argv[3]) if len(sys.argv) > 3 else 1000000
NOW_MS = int(time.time() * 1000)


def start(db, log_path):
    """anodmd on db, its port and the seconds it took to listen."""
    log = open(log_path, "w")
    t0 = time.time()
    proc = subprocess.Popen([ANODMD, "--model", MODEL, "--db", db, "--port", "0",
                             "--workers", "1"], stdout=log, stderr=log)
    while True:
        with open(log_path) as f:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", f.read())
        if m:
            return proc, int(m.group(1)), time.time() - t0
        if proc.poll() is not None:
            sys.exit("anodmd exited; see " + log_path)
        time.sleep(0.02)


def stop(proc):
    proc.terminate()
    proc.wait(60)


def old_summary(path):
    """The pre-schema-3 queries, as log.c ran them."""
    db = sqlite3.connect(path)
    models = [r[0] for r in db.execute("SELECT DISTINCT model FROM scores ORDER BY model")]
    q = ("SELECT score, is_anomaly, count(*) OVER () FROM scores "
         "WHERE model = ?1 AND ts_ms >= ?2 ORDER BY score")
    for m in models:
        for secs in (60, 3600, 0):
            for _ in db.execute(q, (m, NOW_MS - secs * 1000 if secs else 0)):
                pass
    db.close()


def main():
    tmp = tempfile.mkdtemp(prefix="anodm-bench-stats-")
    path = os.path.join(tmp, "scores.db")
    log = os.path.join(tmp, "anodmd.txt")
    proc, port, _ = start(path, log)          # the schema, as anodmd creates it
    stop(proc)
    db = sqlite3.connect(path)
    rng = random.Random(1)
    cols = ("ts_ms, model, version, idx, score, raw_score, is_anomaly, threshold, p_value, "
            "d_re, d_map, z_re, z_map, x, y, nearest_ref, nearest_distance, d_latent, z_latent")

    def rows():
        for i in range(ROWS):
            s = rng.gauss(0, 1)
            yield (NOW_MS - int(10 * 86400000 * (ROWS - i) / ROWS), "fashion" if i % 4 else "ecg",
                   "v", 0, s, s, int(s > 2.33), 2.33, 0.5, s, s, s, s, 0.0, 0.0, 0, 0.1, s, s)
    t0 = time.time()
    db.execute("BEGIN")
    db.executemany("INSERT INTO scores (%s) VALUES (%s)" % (cols, ",".join("?" * 19)), rows())
    db.commit()
    print("log: %d rows written in %.1f s (%s)" % (ROWS, time.time() - t0, path))

    t0 = time.time()
    old_summary(path)
    old = time.time() - t0
    proc, port, _ = start(path, log)
    times = []
    for _ in range(5):
        t0 = time.time()
        with urllib.request.urlopen("http://127.0.0.1:%d/v1/stats" % port) as r:
            body = json.load(r)
        times.append(time.time() - t0)
    stop(proc)
    counts = {m["model"]: m["windows"]["all"]["count"] for m in body["models"]}
    assert sum(counts.values()) == ROWS, counts
    new = sorted(times)[len(times) // 2]
    print("GET /v1/stats: %.1f ms (median of 5); the old queries: %.0f ms; ratio %.0fx"
          % (new * 1000, old * 1000, old / new))

    # Back to what a schema 2 log holds: without the indexes of schema 3, the stream
    # memories' tables of schema 4 and the sinks' positions of schema 5 (anodmd creates
    # those again as it migrates).
    db.execute("DROP INDEX scores_by_model_time")
    db.execute("DROP INDEX scores_by_model_score")
    db.execute("DROP TABLE memories")
    db.execute("DROP TABLE memory_journal")
    db.execute("DROP TABLE sink_position")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    proc, port, took = start(path, log)
    stop(proc)
    print("start on a schema 2 log of %d rows (builds the indexes): %.1f s" % (ROWS, took))
    shutil.rmtree(tmp)


main()
