"""glmix.spark in PySpark local[2] (4.3 and 3.5): both Arrow paths give `glmix train`'s
models, whatever the partitioning; an update with priors from a model DataFrame gives
`glmix train --prior`'s; scores from a model DataFrame are `glmix score`'s.

Skipped when pyspark (or Java) is missing; .ci/run installs pyspark, so there it runs.
"""

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import glmix

pyspark = pytest.importorskip("pyspark")
if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
    pytest.skip("no Java for Spark", allow_module_level=True)

import glmix.spark  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("GLMIX_BIN", str(ROOT / "target" / "release" / "glmix"))
SETTINGS = dict(penalty=3.0, delta=0.7, factr=1e5, pgtol=1e-7)
CLI_SETTINGS = ["--penalty", "3.0", "--delta", "0.7", "--factr", "1e5", "--pgtol", "1e-7"]


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    # The workers run this interpreter, with glmix and pyarrow installed.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    s = (
        SparkSession.builder.master("local[2]")
        .appName("glmix-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    yield s
    s.stop()


def records(n_entities, seed):
    """Records of a few hundred entities in record order, each with its number `row`."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_entities * 12):
        e = rng.randrange(n_entities)
        features = [
            {"name": f"x{k}", "term": "", "value": rng.gauss(0, 1)}
            for k in range(5)
            if rng.random() < 0.7
        ]
        rows.append({
            "row": i, "entity": f"u{e}", "label": float(rng.random() < 0.4),
            "weight": 1.0, "offset": rng.uniform(-0.3, 0.3), "features": features,
        })
    return rows


def cli_models(tmp_path, rows, name, prior=None):
    """`glmix train` on `rows` as JSON lines (in record order), as model lines by entity."""
    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "row"}) + "\n"
                            for r in rows))
    out = tmp_path / f"{name}.models.jsonl"
    extra = ["--prior", str(prior)] if prior else []
    done = subprocess.run([BIN, "train", "--data", str(data), "--objective", "bayes-logistic",
                           "--device", "cpu", "--out", str(out), *CLI_SETTINGS, *extra],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out


def by_entity(path):
    return sorted(path.read_text().splitlines(), key=lambda line: json.loads(line)["entity"])


def spark_lines(tmp_path, models_df, name):
    out = tmp_path / f"{name}.jsonl"
    glmix.save_models(glmix.spark.to_arrow(models_df), out)
    return by_entity(out)


def frame(spark, rows):
    return glmix.spark.from_arrow(spark, pa.Table.from_pylist(rows))


def test_both_arrow_paths_give_the_cli_models_whatever_the_partitioning(spark, tmp_path):
    rows = records(300, seed=1)
    expected = by_entity(cli_models(tmp_path, rows, "all"))
    df = frame(spark, rows)
    for k, (method, partitions, shuffled) in enumerate(
        [("map", None, df), ("map", 3, df.repartition(7)), ("group", None, df.repartition(5))]
    ):
        models = glmix.spark.train(shuffled, "bayes-logistic", order_by="row", method=method,
                                   partitions=partitions, **SETTINGS)
        assert spark_lines(tmp_path, models, f"s{k}") == expected, (method, partitions)
    # Without an order column, the rows' canonical order: still independent of partitioning.
    a = spark_lines(tmp_path, glmix.spark.train(df.drop("row"), "bayes-logistic", **SETTINGS), "a")
    b = spark_lines(tmp_path, glmix.spark.train(df.drop("row").repartition(9), "bayes-logistic",
                                                partitions=2, **SETTINGS), "b")
    assert a == b and len(a) == 300


def test_an_update_with_priors_from_a_model_dataframe_is_glmix_train_prior(spark, tmp_path):
    rows = records(300, seed=2)
    first = rows[: len(rows) // 2]
    # The update covers some entities only: the others keep their prior models.
    second = [r for r in rows[len(rows) // 2:] if int(r["entity"][1:]) % 3 != 0]
    prior_path = cli_models(tmp_path, first, "first")
    expected = by_entity(cli_models(tmp_path, second, "second", prior=prior_path))
    prior_df = glmix.spark.from_arrow(spark, glmix.load_models(prior_path))
    models = glmix.spark.train(frame(spark, second), "bayes-logistic", prior=prior_df,
                               order_by="row", **SETTINGS)
    assert spark_lines(tmp_path, models, "update") == expected


def test_scores_from_a_model_dataframe_are_glmix_scores(spark, tmp_path):
    rows = records(300, seed=3)
    models_path = cli_models(tmp_path, rows[: len(rows) // 2], "train")
    data = tmp_path / "score.jsonl"
    data.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "row"}) + "\n"
                            for r in rows))
    out = tmp_path / "scores.jsonl"
    done = subprocess.run([BIN, "score", "--data", str(data), "--model", str(models_path),
                           "--device", "cpu", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = [json.loads(line)["score"] for line in out.read_text().splitlines()]
    # Some entities have no model (they score their offsets).
    models_df = glmix.spark.from_arrow(spark, glmix.load_models(models_path))
    assert models_df.count() < 300
    df = frame(spark, rows)
    for shuffled in [df, df.repartition(7)]:
        got = glmix.spark.to_arrow(glmix.spark.score(shuffled, models_df)).to_pylist()
        assert sorted(got[0]) == ["entity", "label", "offset", "row", "score", "weight"]
        assert [g["score"] for g in sorted(got, key=lambda g: g["row"])] == expected


def game_records(n_users, seed):
    """Logistic GAME records: global features f0..f2, a per-user feature u."""
    rng = random.Random(seed)
    slopes = [rng.gauss(0, 1) for _ in range(n_users)]
    rows = []
    for i in range(n_users * 15):
        user = rng.randrange(n_users)
        f = [rng.gauss(0, 1) for _ in range(3)]
        u = rng.gauss(0, 1)
        margin = 0.3 + f[0] - 0.5 * f[1] + slopes[user] * u
        features = [{"name": f"f{k}", "term": "", "value": v} for k, v in enumerate(f)]
        features.append({"name": "u", "term": "", "value": u})
        rows.append({"row": i, "user": f"u{user}", "label": float(rng.random() < 1 / (1 + 2.718 ** -margin)),
                     "offset": rng.uniform(-0.2, 0.2), "features": features})
    return rows


def test_a_two_coordinate_game_is_glmix_game_train(spark, tmp_path):
    rows = game_records(120, seed=4)
    tight = {"factr": 10.0, "pgtol": 1e-10}
    config = {
        "passes": 2,
        "feature_sets": {"global": ["f0", "f1", "f2"], "user": ["u"]},
        "coordinates": [
            {"name": "global", "type": "fixed", "feature_set": "global", "objective": "logistic",
             "penalty": 1.0, "intercept_penalty": False, **tight},
            {"name": "per-user", "type": "random", "entity_key": "user", "feature_set": "user",
             "objective": "logistic", "penalty": 2.0, **tight},
        ],
    }
    (tmp_path / "game.json").write_text(json.dumps(config))
    data = tmp_path / "game.jsonl"
    data.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "row"}) + "\n"
                            for r in rows))
    done = subprocess.run([BIN, "game", "train", "--device", "cpu", "--config",
                           str(tmp_path / "game.json"), "--data", str(data), "--out",
                           str(tmp_path / "cli")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    models = glmix.spark.game_train(frame(spark, rows).repartition(3), tmp_path / "game.json",
                                    order_by="row")
    assert list(models) == ["global", "per-user"]
    for name, df in models.items():
        cli = {m["entity"]: m for m in map(json.loads, (tmp_path / "cli" / f"{name}.jsonl")
                                           .read_text().splitlines())}
        got = {m["entity"]: m for m in glmix.spark.to_arrow(df).to_pylist()}
        assert sorted(got) == sorted(cli)
        worst = 0.0
        for entity, m in got.items():
            for part in ["means", "variances"]:
                want = {(c["name"], c["term"]): c["value"] for c in cli[entity][part]}
                have = {(c["name"], c["term"]): c["value"] for c in m[part]}
                assert sorted(have) == sorted(want), (name, entity, part)
                scale = max(abs(v) for v in want.values())
                worst = max(worst, *(abs(have[k] - want[k]) / scale for k in want))
        print(f"{name}: largest relative difference {worst:.2e}")
        assert worst < 1e-6, (name, worst)
