"""glmix.spark in PySpark local[2] on the peers workload, against the CLI, in one run.

usage: python bench/python/spark_peers.py --glmix BIN --data DATA.parquet [--method map]

Times (wall, one run each, alternated with the CLI's `glmix train --data DATA.parquet`):
the Spark session's start, then `glmix.spark.train` on `spark.read.parquet(DATA)` up to
the model rows collected as Arrow (the shuffle by entity, the Arrow hand-off, the sort
and glmix's fit in the tasks), and the same plan without glmix for the split.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import glmix
import glmix.spark

SETTINGS = dict(penalty=10.0, delta=0.8, hessian="diagonal", factr=1e6)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--glmix", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--method", default="map")
    a = p.parse_args()
    os.environ["PYSPARK_PYTHON"] = sys.executable
    work = Path(tempfile.mkdtemp())
    start = time.perf_counter()
    subprocess.run([a.glmix, "train", "--data", a.data, "--objective", "bayes-logistic",
                    "--penalty", "10", "--delta", "0.8", "--hessian", "diagonal",
                    "--factr", "1e6", "--device", "cpu", "--out", work / "cli.jsonl"],
                   check=True, capture_output=True)
    cli = time.perf_counter() - start

    from pyspark.sql import SparkSession
    start = time.perf_counter()
    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    spark.range(1).count()
    session = time.perf_counter() - start

    df = spark.read.parquet(a.data)

    def no_glmix():
        # The same plan up to the Arrow hand-off (read, hash, shuffle), no glmix.
        from pyspark.sql import functions as F
        keys = [c for c in df.columns if c != "entity"]
        d = df.withColumn(glmix.spark.ORDER, F.xxhash64(*keys))
        start = time.perf_counter()
        (d.repartition(2, "entity")
           .mapInArrow(lambda it: (b.slice(0, 0) for b in it), d.schema).count())
        return time.perf_counter() - start

    warm = no_glmix()
    start = time.perf_counter()
    models = glmix.spark.train(df, "bayes-logistic", method=a.method, partitions=2,
                               **SETTINGS).toArrow()
    job = time.perf_counter() - start
    shuffle = no_glmix()
    spark.stop()
    glmix.save_models(models, work / "spark.jsonl")
    import json

    def means(path):
        return {m["entity"]: [c["value"] for c in m["means"]]
                for m in map(json.loads, path.read_text().splitlines())}

    cli_means, spark_means = means(work / "cli.jsonl"), means(work / "spark.jsonl")
    worst = max(abs(x - y) / max(abs(y), 1e-12)
                for e, ys in cli_means.items() for x, y in zip(spark_means[e], ys))
    # The rows of an entity are trained in another order (sorted), so the last bits differ.
    print(f"{models.num_rows} models; largest relative difference from the CLI's: {worst:.1e}")
    print(f"CLI glmix train, whole process     {cli:.2f} s")
    print(f"Spark session start (local[2])     {session:.2f} s")
    print(f"glmix.spark.train ({a.method}) to Arrow   {job:.2f} s  = {job / cli:.1f}x the CLI")
    print(f"  the same read + hash + shuffle + hand-off, no glmix: {shuffle:.2f} s"
          f" (first run, JVM cold: {warm:.2f} s)")


if __name__ == "__main__":
    main()
