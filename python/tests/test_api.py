"""The Python API against the CLI on the same records: the same model lines byte for
byte, the same scores, the CLI's error messages, and the thread count honoured.

The CLI is the binary `GLMIX_BIN` names (default: target/release/glmix of this checkout).
"""

import json
import os
import random
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import glmix

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("GLMIX_BIN", str(ROOT / "target" / "release" / "glmix"))


def cli(*args):
    done = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


def records(n_entities=60, seed=3):
    """Seeded NTV records: a few dozen rows per entity, sparse features, some terms."""
    rng = random.Random(seed)
    rows = []
    for e in range(n_entities):
        for _ in range(rng.randint(1, 40)):
            features = [
                {"name": f"x{k}", "term": "t" if k % 3 == 0 else "", "value": rng.gauss(0, 1)}
                for k in range(8)
                if rng.random() < 0.6
            ]
            margin = sum(f["value"] for f in features[:2])
            rows.append(
                {
                    "entity": f"u{e}",
                    "label": float(rng.random() < 1 / (1 + 2.718 ** -margin)),
                    "weight": rng.choice([1.0, 0.5, 2.0]),
                    "offset": rng.uniform(-0.5, 0.5),
                    "features": features,
                }
            )
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def table(rows):
    return pa.Table.from_pylist(rows)


SETTINGS = dict(penalty=3.0, delta=0.7, factr=1e5, pgtol=1e-7)
CLI_SETTINGS = ["--penalty", 3.0, "--delta", 0.7, "--factr", 1e5, "--pgtol", 1e-7]


@pytest.mark.parametrize("objective", ["logistic", "bayes-logistic", "linear", "bayes-linear"])
@pytest.mark.parametrize("hessian", ["diagonal", "full"])
def test_train_gives_the_cli_model_lines(tmp_path, objective, hessian):
    rows = records()
    data = write_jsonl(tmp_path / "r.jsonl", rows)
    out = tmp_path / "cli.jsonl"
    cli("train", "--data", data, "--objective", objective, "--hessian", hessian,
        "--device", "cpu", "--out", out, *CLI_SETTINGS)
    models = glmix.train(table(rows), objective, hessian=hessian, **SETTINGS)
    assert models.num_rows == 60
    glmix.save_models(models, tmp_path / "py.jsonl")
    assert (tmp_path / "py.jsonl").read_bytes() == out.read_bytes()
    # From the file itself, and through a Parquet model file, the same.
    glmix.save_models(glmix.train(data, objective, hessian=hessian, **SETTINGS), tmp_path / "f.jsonl")
    assert (tmp_path / "f.jsonl").read_bytes() == out.read_bytes()
    glmix.save_models(models, tmp_path / "m.parquet")
    glmix.save_models(glmix.load_models(tmp_path / "m.parquet"), tmp_path / "back.jsonl")
    assert (tmp_path / "back.jsonl").read_bytes() == out.read_bytes()


def test_an_update_from_a_prior_gives_the_cli_models(tmp_path):
    rows = records()
    first, second = rows[: len(rows) // 2], records(n_entities=80, seed=4)[len(rows) // 2:]
    write_jsonl(tmp_path / "a.jsonl", first)
    write_jsonl(tmp_path / "b.jsonl", second)
    cli("train", "--data", tmp_path / "a.jsonl", "--objective", "bayes-logistic",
        "--device", "cpu", "--out", tmp_path / "prior.jsonl", *CLI_SETTINGS)
    cli("train", "--data", tmp_path / "b.jsonl", "--objective", "bayes-logistic",
        "--device", "cpu", "--prior", tmp_path / "prior.jsonl", "--out", tmp_path / "cli.jsonl",
        *CLI_SETTINGS)
    prior = glmix.train(table(first), "bayes-logistic", **SETTINGS)
    models, summary = glmix.train(
        table(second), "bayes-logistic", prior=prior, summary=True, **SETTINGS
    )
    glmix.save_models(models, tmp_path / "py.jsonl")
    assert (tmp_path / "py.jsonl").read_bytes() == (tmp_path / "cli.jsonl").read_bytes()
    # The prior's entities that the update lacks are carried over.
    assert summary["carried_over"] == models.num_rows - summary["entities"] > 0
    # A prior given as a file reads the same.
    from_file = glmix.train(table(second), "bayes-logistic", prior=tmp_path / "prior.jsonl",
                            **SETTINGS)
    assert from_file.equals(models)


def test_scores_are_the_cli_scores(tmp_path):
    rows = records()
    data = write_jsonl(tmp_path / "r.jsonl", rows)
    cli("train", "--data", data, "--objective", "bayes-logistic", "--device", "cpu",
        "--out", tmp_path / "m.jsonl", *CLI_SETTINGS)
    for extra, kwargs in [([], {}), (["--thompson", 0.5, "--seed", 9], {"thompson": 0.5, "seed": 9})]:
        cli("score", "--data", data, "--model", tmp_path / "m.jsonl", "--device", "cpu",
            "--out", tmp_path / "s.jsonl", *extra)
        expected = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
        scores = glmix.score(table(rows), tmp_path / "m.jsonl", **kwargs).to_pylist()
        assert scores == expected


def test_wide_columns_and_pandas_read_as_the_ntv_records(tmp_path):
    rows = records()
    ntv = glmix.train(table(rows), "logistic", **SETTINGS)
    wide = [
        {"entity": r["entity"], "label": r["label"], "weight": r["weight"], "offset": r["offset"],
         **{f"{f['name']}": f["value"] for f in r["features"] if f["term"] == ""}}
        for r in rows
    ]
    only_plain = [
        {**r, "features": [f for f in r["features"] if f["term"] == ""]} for r in rows
    ]
    # Absent wide features are nulls, as zeros would be.
    frame = pa.Table.from_pylist(wide).to_pandas()
    from_wide = glmix.train(frame, "logistic", feature_columns="x*", **SETTINGS)
    assert from_wide.equals(glmix.train(table(only_plain), "logistic", **SETTINGS))
    pq.write_table(table(rows), tmp_path / "r.parquet")
    assert glmix.train(tmp_path / "r.parquet", "logistic", **SETTINGS).equals(ntv)
    batch = table(rows).combine_chunks().to_batches()[0]
    assert glmix.train(batch, "logistic", **SETTINGS).equals(ntv)


def test_bad_input_raises_the_cli_message(tmp_path):
    rows = records()
    with pytest.raises(glmix.GlmixError, match=r"<table>: label: no such column"):
        glmix.train(table(rows).drop_columns(["label"]), "logistic")
    labels = table(rows).column("label").to_pylist()
    labels[41] = None
    bad = table(rows).set_column(1, "label", pa.array(labels))
    with pytest.raises(glmix.GlmixError, match=r"<table>:42: label: null label"):
        glmix.train(bad, "logistic")
    write_jsonl(tmp_path / "r.jsonl", rows)
    text = (tmp_path / "r.jsonl").read_text().splitlines()
    text[6] = text[6].replace('"weight": ', '"weight": -')
    (tmp_path / "bad.jsonl").write_text("\n".join(text) + "\n")
    with pytest.raises(glmix.GlmixError, match=r"bad.jsonl:7: weight: .* is negative"):
        glmix.train(tmp_path / "bad.jsonl", "logistic")
    with pytest.raises(glmix.GlmixError, match="objective"):
        glmix.train(table(rows), "poisson")
    with pytest.raises(glmix.GlmixError, match=r"<models>:2: entity"):
        models = glmix.train(table(rows), "logistic")
        glmix.save_models(pa.concat_tables([models.slice(0, 1), models.slice(0, 1)]),
                          tmp_path / "twice.jsonl")
    assert not (tmp_path / "twice.jsonl").exists()


def test_the_thread_count_is_honoured_and_changes_nothing(tmp_path):
    rows = records()
    runs = {}
    for threads in (1, 3):
        models, summary = glmix.train(table(rows), "bayes-logistic", threads=threads,
                                      summary=True, **SETTINGS)
        assert summary["threads"] == threads
        runs[threads] = models
    assert runs[1].equals(runs[3])


def test_rank_gives_the_cli_shown_candidates(tmp_path):
    rows = records()
    for i, r in enumerate(rows):
        r["request"] = f"q{i // 5}"
    data = write_jsonl(tmp_path / "r.jsonl", rows)
    cli("train", "--data", data, "--objective", "bayes-logistic", "--device", "cpu",
        "--out", tmp_path / "m.jsonl", *CLI_SETTINGS)
    for extra, kwargs in [
        ([], {}),
        (["--policy", "ucb", "--alpha", 2, "--top", 2], {"policy": "ucb", "alpha": 2, "top": 2}),
        (["--policy", "epsilon-greedy", "--seed", 4], {"policy": "epsilon-greedy", "seed": 4}),
    ]:
        cli("rank", "--data", data, "--model", tmp_path / "m.jsonl", "--request-key", "request",
            "--out", tmp_path / "shown.jsonl", *extra)
        expected = [json.loads(line) for line in (tmp_path / "shown.jsonl").read_text().splitlines()]
        shown = glmix.rank(table(rows), tmp_path / "m.jsonl", "request", **kwargs).to_pylist()
        assert shown == expected
    with pytest.raises(glmix.GlmixError, match="request"):
        glmix.rank(table(records()), tmp_path / "m.jsonl", "request")
    with pytest.raises(glmix.GlmixError, match="policy"):
        glmix.rank(table(rows), tmp_path / "m.jsonl", "request", policy="best")


def arrays(n=900, d=6, entities=40, seed=5):
    """A dense feature matrix with many zeros, labels, entity ids and offsets."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * (rng.random((n, d)) < 0.5)
    margin = x[:, 0] - 0.5 * x[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(float)
    users = rng.integers(0, entities, size=n)
    return x, y, np.array([f"u{u}" for u in users]), rng.uniform(-0.5, 0.5, size=n)


def test_numpy_and_scipy_sparse_arrays_train_as_their_records_do(tmp_path):
    import scipy.sparse

    x, y, users, offsets = arrays()
    names = [f"f{j}" for j in range(x.shape[1])]
    rows = [
        {
            "entity": users[i],
            "label": y[i],
            "offset": offsets[i],
            "features": [
                {"name": names[j], "term": "", "value": x[i, j]}
                for j in range(x.shape[1])
                if x[i, j] != 0
            ],
        }
        for i in range(len(y))
    ]
    data = write_jsonl(tmp_path / "r.jsonl", rows)
    cli("train", "--data", data, "--objective", "bayes-logistic", "--device", "cpu",
        "--out", tmp_path / "cli.jsonl", *CLI_SETTINGS)
    # An explicit zero in the sparse matrix is no feature, as in the dense one.
    sparse = scipy.sparse.csr_matrix(x)
    sparse.data[::7] = 0.0
    dense = sparse.toarray()
    rows_dense = glmix.records(dense, y, users, offset=offsets, feature_names=names)
    for features in [dense, sparse, scipy.sparse.csc_matrix(dense)]:
        t = glmix.records(features, y, users, offset=offsets, feature_names=names)
        assert t.equals(rows_dense)
    # The dense matrix without the zeroed entries is x itself.
    t = glmix.records(x, y, users, offset=offsets, feature_names=names)
    glmix.save_models(glmix.train(t, "bayes-logistic", **SETTINGS), tmp_path / "py.jsonl")
    assert (tmp_path / "py.jsonl").read_bytes() == (tmp_path / "cli.jsonl").read_bytes()
    # Scoring arrays needs no labels.
    scores = glmix.score(glmix.records(x, entity=users, offset=offsets, feature_names=names),
                         tmp_path / "cli.jsonl")
    assert scores.column("score").to_pylist() == glmix.score(t, tmp_path / "cli.jsonl").column("score").to_pylist()
    with pytest.raises(glmix.GlmixError, match="label: expected 900 values"):
        glmix.records(x, y[:10], users)
    with pytest.raises(glmix.GlmixError, match="feature_names: 2 names for 6"):
        glmix.records(x, y, users, feature_names=["a", "b"])


def test_eval_gives_the_cli_metrics(tmp_path):
    rows = records()
    data = write_jsonl(tmp_path / "r.jsonl", rows)
    cli("train", "--data", data, "--objective", "bayes-logistic", "--device", "cpu",
        "--out", tmp_path / "m.jsonl", *CLI_SETTINGS)
    for asked in [None, ["auc", "rmse"]]:
        extra = [] if asked is None else ["--metrics", ",".join(asked)]
        expected = json.loads(cli("eval", "--data", data, "--model", tmp_path / "m.jsonl",
                                  *extra).stdout)
        got = glmix.eval(table(rows), tmp_path / "m.jsonl", metrics=asked)
        assert got == expected
    assert list(glmix.eval(table(rows), tmp_path / "m.jsonl")) == ["auc", "logloss", "entity_auc"]
    with pytest.raises(glmix.GlmixError, match="unknown metric"):
        glmix.eval(table(rows), tmp_path / "m.jsonl", metrics=["accuracy"])


def test_scoring_and_ranking_read_no_labels(tmp_path):
    rows = records()
    for i, r in enumerate(rows):
        r["request"] = f"q{i // 4}"
    cli("train", "--data", write_jsonl(tmp_path / "r.jsonl", rows), "--objective",
        "bayes-logistic", "--device", "cpu", "--out", tmp_path / "m.jsonl", *CLI_SETTINGS)
    bare = table(rows).drop_columns(["label"])
    assert glmix.score(bare, tmp_path / "m.jsonl").equals(glmix.score(table(rows), tmp_path / "m.jsonl"))
    assert glmix.rank(bare, tmp_path / "m.jsonl", "request", top=2).equals(
        glmix.rank(table(rows), tmp_path / "m.jsonl", "request", top=2))
    with pytest.raises(glmix.GlmixError, match="label"):
        glmix.train(bare, "logistic")
