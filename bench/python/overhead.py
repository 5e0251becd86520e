"""The Python API's cost over the CLI's on the peers workload, side by side in one run.

usage: python bench/python/overhead.py --glmix BIN --data DATA.jsonl [--runs 5]

Reads the records once into a pyarrow table (from DATA.jsonl, also written as Parquet
beside it), then alternates, RUNS times each: `glmix.train(table)` in this process, and
the CLI's `glmix train --data DATA.parquet` as a process (read + fit + write). Prints
the medians: the Python call's wall time and, from its summary, the fit within it (the
rest is the table's conversion into records and the model table's assembly); the CLI's
wall time and its own fit (`solve_seconds`).
"""
import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow.json as pj
import pyarrow.parquet as pq

import glmix

SETTINGS = dict(penalty=10.0, delta=0.8, hessian="diagonal", factr=1e6)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--glmix", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    table = pj.read_json(a.data).select(["entity", "label", "weight", "offset", "features"])
    work = Path(tempfile.mkdtemp())
    parquet = work / "data.parquet"
    pq.write_table(table, parquet)
    py_wall, py_fit, cli_wall, cli_fit = [], [], [], []
    for _ in range(a.runs):
        start = time.perf_counter()
        models, summary = glmix.train(table, "bayes-logistic", summary=True, **SETTINGS)
        py_wall.append(time.perf_counter() - start)
        py_fit.append(summary["solve_seconds"])
        start = time.perf_counter()
        subprocess.run(
            [a.glmix, "train", "--data", parquet, "--objective", "bayes-logistic",
             "--penalty", "10", "--delta", "0.8", "--hessian", "diagonal", "--factr", "1e6",
             "--device", "cpu", "--out", work / "m.jsonl", "--summary", work / "s.json"],
            check=True, capture_output=True)
        cli_wall.append(time.perf_counter() - start)
        cli_fit.append(json.loads((work / "s.json").read_text())["solve_seconds"])
    med = statistics.median
    print(f"{models.num_rows} entities, {table.num_rows} records, median of {a.runs}")
    print(f"glmix.train(table)            wall {med(py_wall):.3f} s   fit {med(py_fit):.3f} s")
    print(f"glmix train --data .parquet   wall {med(cli_wall):.3f} s   fit {med(cli_fit):.3f} s")
    print(f"Python wall / CLI fit {med(py_wall) / med(cli_fit):.2f}x;"
          f" Python wall / CLI wall {med(py_wall) / med(cli_wall):.2f}x")


if __name__ == "__main__":
    main()
