"""Time glmix's per-record stream and Vowpal Wabbit on the same records (see `run`)."""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def auc(scores, positive):
    """Rank AUC, ties counted half."""
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    ranked = np.empty(len(s))
    ranked[order] = ranks
    n1 = positive.sum()
    n0 = len(positive) - n1
    return (ranked[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def to_vw(data, out):
    """The records as VW text; returns the labels (True for 1)."""
    labels = []
    with open(data) as f, open(out, "w") as g:
        for line in f:
            r = json.loads(line)
            y = float(r["label"]) == 1.0
            labels.append(y)
            feats = " ".join(
                f"{ft['name']}_{ft['term']}" if float(ft["value"]) == 1.0
                else f"{ft['name']}_{ft['term']}:{ft['value']}"
                for ft in r.get("features", [])
            )
            g.write(f"{1 if y else -1} 1 {r.get('offset', 0.0)} |u {r['entity']} |f {feats}\n")
    return np.array(labels)


def settled():
    """Write out every dirty page first: the inputs just written (about 330 MB) would
    otherwise be flushed during the next timed run, and a durable commit (glmix's fsync)
    waits for them."""
    os.sync()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--glmix", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    vw_data = os.path.join(a.work, "stream.vw")
    positive = to_vw(a.data, vw_data)
    records = len(positive)
    rows = []

    store = os.path.join(a.work, "nearline.redb")
    if os.path.exists(store):
        os.remove(store)
    settled()
    start = time.perf_counter()
    out = subprocess.run(
        [a.glmix, "stream", "--data", a.data, "--store", store, "--objective", "bayes-logistic",
         "--penalty", "10", "--delta", "0.8", "--device", "cpu", "--batch-records", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    seconds = time.perf_counter() - start
    summary = json.loads(out.stderr.strip().splitlines()[-1])
    rows.append(("glmix stream, per record (bayes-logistic)", seconds, summary["running_auc"],
                 f"p50 {summary['batch_latency_median_seconds'] * 1e6:.1f} us, "
                 f"p99 {summary['batch_latency_p99_seconds'] * 1e6:.1f} us per record"))

    for rate in [0.1, 0.5, 2.0]:
        for predictions in [True, False]:
            preds = os.path.join(a.work, f"vw-{rate}.preds")
            argv = [sys.executable, "-m", "vowpalwabbit", "-d", vw_data, "--loss_function",
                    "logistic", "-q", "uf", "-l", str(rate), "--quiet"]
            if predictions:
                argv += ["-p", preds]
            settled()
            start = time.perf_counter()
            subprocess.run(argv, check=True)
            seconds = time.perf_counter() - start
            score = float("nan")
            if predictions:
                score = auc(np.loadtxt(preds, usecols=0), positive)
            rows.append((f"Vowpal Wabbit -q uf, -l {rate}" + (", writing predictions" if predictions else ""),
                         seconds, score, ""))

    print(f"{records:,} records of the demo stream, one update per record, progressive validation\n")
    print("| run | seconds | records/s | AUC | note |")
    print("|---|---|---|---|---|")
    for name, seconds, score, note in rows:
        shown = "–" if score != score else f"{score:.4f}"
        print(f"| {name} | {seconds:.2f} | {records / seconds:,.0f} | {shown} | {note} |")


if __name__ == "__main__":
    main()
