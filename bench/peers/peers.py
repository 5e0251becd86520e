"""Solve one glmix workload with glmix's peers and compare them with glmix.

Called by `bench/peers/run`, which generates the workload, runs glmix and writes
`glmix_runs.json`. Every peer minimises the same objective on the same records
(DESIGN §1, `bayes-logistic` with a cold-start prior θ₀ = 0, H₀ = λI):

    F(θ) = Σ w_i log(1 + e^{−y_i m_i}) + (1−δ) λ/2 ‖θ‖² + δ/2 (θ−θ₀)ᵀ H₀ (θ−θ₀),
    m_i = o_i + x_i·θ,  y_i = +1 for label 1 and −1 otherwise,

with an intercept column that is penalised like every other coefficient, and the
stopping rules of scipy's L-BFGS-B (--factr, pgtol 1e-5, 10 correction pairs).

Peers:
- Lambda Learner 0.1.0, one entity at a time exactly as its README shows
  (IndexMap → index-domain data and model → TrainerSequentialBayesianLogisticLossWithL2
  → train()); only train() is timed.
- scipy's L-BFGS-B per entity with an analytic gradient on dense numpy arrays; only
  the fmin_l_bfgs_b call is timed.
- jax: jaxopt's L-BFGS vmapped over all entities (rows and columns padded to the
  largest entity; padded rows have weight 0, padded columns no data), jit-compiled
  once and timed on later calls; on a GPU host jax uses the GPU when jax has one.

Each solver's coefficients are compared with the reference optimum θ* (glmix's f64
CPU path with tight tolerances) and with the first glmix row: per entity
‖θ − θ*‖∞ / ‖θ*‖∞, the table showing the largest ("Δ optimum", "Δ glmix"). The run
fails (exit 1) when any solver is further than --tolerance from the optimum.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np

INTERCEPT = ("intercept", "intercept")


def read_records(path):
    """entity → (columns, X, y, w, o): dense numpy arrays, columns intercept first then
    the entity's feature keys in sorted order, y = ±1. The file must be grouped by entity
    (as `glmix generate` writes it); each entity becomes arrays as soon as its rows are
    read, so that a million records do not stay millions of Python objects."""
    problems, entity, records = {}, None, []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            r = json.loads(line)
            if r["entity"] != entity:
                if entity is not None:
                    problems[entity] = dense_problem(records)
                entity, records = r["entity"], []
                if entity in problems:
                    sys.exit(f"{path}:{number}: entity {entity!r} comes back; the file must be grouped by entity")
            feats = {(ft["name"], ft["term"]): float(ft["value"]) for ft in r.get("features", [])}
            label = 1.0 if float(r["label"]) == 1.0 else -1.0
            records.append(((label, float(r.get("weight", 1.0)), float(r.get("offset", 0.0))), feats))
    if entity is not None:
        problems[entity] = dense_problem(records)
    return problems


def read_parquet_records(path):
    """read_records for NTV Parquet (as `glmix generate --out F.parquet` writes it): the
    same problems, built with numpy from the flat feature arrays, one entity at a time."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["entity", "label", "weight", "offset", "features"])
    entity = table["entity"].to_numpy(zero_copy_only=False)
    label = np.where(table["label"].to_numpy() == 1.0, 1.0, -1.0)
    weight, offset = table["weight"].to_numpy(), table["offset"].to_numpy()
    features = table["features"].combine_chunks()
    starts = features.offsets.to_numpy()
    flat = features.flatten()
    keys = pc.binary_join_element_wise(flat.field("name"), flat.field("term"), "\x00").dictionary_encode()
    names = [tuple(k.split("\x00")) for k in keys.dictionary.to_pylist()]
    # Feature codes renumbered in (name, term) order, as dense_problem sorts its columns.
    rank = np.empty(len(names), dtype=np.int64)
    rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    ordered = sorted(names)
    code = rank[keys.indices.to_numpy()]
    value = flat.field("value").to_numpy()
    bounds = np.flatnonzero(entity[1:] != entity[:-1]) + 1
    runs = np.concatenate(([0], bounds, [len(entity)]))
    problems, columns_of = {}, {}
    for a, b in zip(runs[:-1], runs[1:]):
        name = entity[a]
        if name in problems:
            sys.exit(f"{path}: entity {name!r} comes back; the file must be grouped by entity")
        c, v = code[starts[a]:starts[b]], value[starts[a]:starts[b]]
        row = np.repeat(np.arange(b - a), np.diff(starts[a:b + 1]))
        own = np.unique(c)
        x = np.zeros((b - a, len(own) + 1))
        x[:, 0] = 1.0
        x[row, 1 + np.searchsorted(own, c)] = v
        signature = own.tobytes()
        if signature not in columns_of:
            columns_of[signature] = [INTERCEPT] + [ordered[k] for k in own]
        problems[name] = (columns_of[signature], x, label[a:b].copy(), weight[a:b].copy(), offset[a:b].copy())
    return problems


def dense_problem(records):
    keys = sorted({k for _, feats in records for k in feats})
    col = {k: j + 1 for j, k in enumerate(keys)}
    x = np.zeros((len(records), len(keys) + 1))
    x[:, 0] = 1.0
    for i, (_, feats) in enumerate(records):
        for k, v in feats.items():
            x[i, col[k]] = v
    ywo = np.array([r for r, _ in records]).reshape(len(records), 3)
    return [INTERCEPT] + keys, x, ywo[:, 0].copy(), ywo[:, 1].copy(), ywo[:, 2].copy()


def read_models(path):
    """entity → {(name, term): mean}"""
    models = {}
    with open(path) as f:
        for line in f:
            m = json.loads(line)
            models[m["entity"]] = {(c["name"], c["term"]): float(c["value"]) for c in m["means"]}
    return models


def relative_difference(coefs, reference):
    keys = set(coefs) | set(reference)
    scale = max((abs(v) for v in reference.values()), default=0.0)
    diff = max((abs(coefs.get(k, 0.0) - reference.get(k, 0.0)) for k in keys), default=0.0)
    return diff / scale if scale > 0 else diff


def lambda_learner_update(training, penalty, delta, factr):
    """One entity's update exactly as Lambda Learner's README shows it: IndexMap →
    index-domain data and cold-start model → TrainerSequentialBayesianLogisticLossWithL2
    → train(). Returns ({(name, term): mean}, converged, train() seconds)."""
    from linkedin.learner.ds.index_map import IndexMap
    from linkedin.learner.ds.representation_utils import (
        index_domain_coeffs_to_nt_domain_coeffs,
        nt_domain_coeffs_to_index_domain_coeffs,
        nt_domain_data_to_index_domain_data,
    )
    from linkedin.learner.prediction.hessian_type import HessianType
    from linkedin.learner.prediction.trainer_sequential_bayesian_logistic_loss_with_l2 import (
        TrainerSequentialBayesianLogisticLossWithL2,
    )

    index_map, _ = IndexMap.from_records_means_and_variances(training, [], [])
    data = nt_domain_data_to_index_domain_data(training, index_map)
    initial = nt_domain_coeffs_to_index_domain_coeffs([], [], index_map, penalty)
    trainer = TrainerSequentialBayesianLogisticLossWithL2(
        training_data=data,
        initial_model=initial,
        hessian_type=HessianType.DIAGONAL,
        penalty=penalty,
        delta=delta,
    )
    start = time.perf_counter()
    model, _, meta = trainer.train(precision=factr)
    seconds = time.perf_counter() - start
    means, _ = index_domain_coeffs_to_nt_domain_coeffs(model, index_map)
    return dict(means), meta["warnflag"] == 0, seconds


def run_lambda_learner(entities, penalty, delta, factr):
    from linkedin.learner.ds.feature import Feature
    from linkedin.learner.ds.record import TrainingRecord

    coefs, seconds, failed = {}, 0.0, 0
    for entity, (keys, x, y, w, o) in entities.items():
        # Back to the NTV records of the file (the label as 1 / 0, as Lambda Learner reads it).
        training = [
            TrainingRecord(
                label=1.0 if y[i] == 1.0 else 0.0,
                weight=w[i],
                offset=o[i],
                features=[Feature(n, t, x[i, j]) for j, (n, t) in enumerate(keys) if j > 0 and x[i, j] != 0.0],
            )
            for i in range(len(y))
        ]
        coefs[entity], converged, took = lambda_learner_update(training, penalty, delta, factr)
        seconds += took
        failed += not converged
    return coefs, seconds, f"{failed} not converged" if failed else ""


def run_lambda_learner_end_to_end(path, limit, penalty, delta, factr):
    """Lambda Learner's load-and-update of the file: each JSON line into its
    TrainingRecord, each entity updated as soon as its records are read (the file is
    grouped by entity), on the first `limit` entities (0: all). Timed whole, from opening
    the file to the last model."""
    from linkedin.learner.ds.feature import Feature
    from linkedin.learner.ds.record import TrainingRecord

    start = time.perf_counter()
    coefs, entity, training, failed = {}, None, [], 0

    def update():
        nonlocal failed
        coefs[entity], converged, _ = lambda_learner_update(training, penalty, delta, factr)
        failed += not converged

    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r["entity"] != entity:
                if entity is not None:
                    update()
                    if limit and len(coefs) == limit:
                        entity = None
                        break
                entity, training = r["entity"], []
            training.append(
                TrainingRecord(
                    label=float(r["label"]),
                    weight=float(r.get("weight", 1.0)),
                    offset=float(r.get("offset", 0.0)),
                    features=[Feature(x["name"], x["term"], float(x["value"])) for x in r.get("features", [])],
                )
            )
    if entity is not None:
        update()
    return coefs, time.perf_counter() - start, f"{failed} not converged" if failed else ""


def run_scipy(entities, penalty, delta, factr):
    from scipy.optimize import fmin_l_bfgs_b
    from scipy.special import expit

    coefs, seconds, failed = {}, 0.0, 0
    for entity, (keys, x, y, w, o) in entities.items():
        theta0 = np.zeros(x.shape[1])
        h0 = np.full(x.shape[1], penalty)

        def loss_and_gradient(theta):
            z = y * (o + x @ theta)
            dev = theta - theta0
            f = np.dot(w, np.logaddexp(0.0, -z)) + (1 - delta) * penalty / 2 * theta @ theta
            f += delta / 2 * dev @ (h0 * dev)
            g = x.T @ (-w * y * expit(-z)) + (1 - delta) * penalty * theta + delta * h0 * dev
            return f, g

        start = time.perf_counter()
        theta, _, info = fmin_l_bfgs_b(loss_and_gradient, theta0, m=10, factr=factr, pgtol=1e-5, maxiter=15000)
        seconds += time.perf_counter() - start
        failed += info["warnflag"] != 0
        coefs[entity] = dict(zip(keys, theta.tolist()))
    return coefs, seconds, f"{failed} not converged" if failed else ""


def run_jax(entities, penalty, delta, repeats):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jaxopt

    problems = [(entity, *problem) for entity, problem in entities.items()]
    rows = max(p[2].shape[0] for p in problems)
    cols = max(p[2].shape[1] for p in problems)
    count = len(problems)
    x = np.zeros((count, rows, cols))
    y = np.ones((count, rows))
    w = np.zeros((count, rows))
    o = np.zeros((count, rows))
    for e, (_, _, xe, ye, we, oe) in enumerate(problems):
        n, d = xe.shape
        x[e, :n, :d], y[e, :n], w[e, :n], o[e, :n] = xe, ye, we, oe
    h0 = np.full((count, cols), penalty)

    def objective(theta, x, y, w, o, h0):
        z = y * (o + x @ theta)
        return (
            jnp.dot(w, jnp.logaddexp(0.0, -z))
            + (1 - delta) * penalty / 2 * theta @ theta
            + delta / 2 * theta @ (h0 * theta)
        )

    solver = jaxopt.LBFGS(fun=objective, tol=1e-5, maxiter=15000, history_size=10)

    @jax.jit
    def solve_all(x, y, w, o, h0):
        run = lambda x, y, w, o, h0: solver.run(jnp.zeros(cols), x, y, w, o, h0)
        params, state = jax.vmap(run)(x, y, w, o, h0)
        return params, state.iter_num, state.error

    args = [jax.device_put(a) for a in (x, y, w, o, h0)]
    start = time.perf_counter()
    jax.block_until_ready(solve_all(*args))
    compile_seconds = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        params, iters, errors = jax.block_until_ready(solve_all(*args))
        times.append(time.perf_counter() - start)
    # The same solve from host arrays: the transfer to the device is timed too.
    host_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(solve_all(x, y, w, o, h0))
        host_times.append(time.perf_counter() - start)
    params = np.asarray(params)
    failed = int(np.sum(np.asarray(errors) > 1e-5))
    coefs = {entity: dict(zip(keys, params[e, : len(keys)].tolist())) for e, (entity, keys, *_) in enumerate(problems)}
    note = (
        f"{jax.default_backend()}, f64, data on the device; from host arrays "
        f"{statistics.median(host_times):.4f} s; first call {compile_seconds:.2f} s (compile)"
    )
    if failed:
        note += f", {failed} not converged"
    return coefs, statistics.median(times), note


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--glmix-runs", required=True, help="JSON list of {name, models, seconds, entities, note}")
    ap.add_argument("--reference", required=True, help="glmix models solved with tight tolerances")
    ap.add_argument("--penalty", type=float, default=10.0)
    ap.add_argument("--delta", type=float, default=0.8)
    ap.add_argument("--peer-entities", type=int, default=0, help="run the per-entity Python peers on the first N entities only (0: all)")
    ap.add_argument("--factr", type=float, default=1e6, help="relative-reduction stop of every L-BFGS (scipy's meaning)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--peers", default="lambda-learner,scipy,jax")
    ap.add_argument("--end-to-end", help="JSON list of {name, models, seconds, entities, note}: whole glmix train runs (read + fit + write)")
    ap.add_argument("--out", required=True, help="results (JSON)")
    args = ap.parse_args()

    entities = (read_parquet_records if args.data.endswith(".parquet") else read_records)(args.data)
    reference = read_models(args.reference)
    subset = dict(list(entities.items())[: args.peer_entities]) if args.peer_entities else entities

    rows = []
    with open(args.glmix_runs) as f:
        for run in json.load(f):
            rows.append((run["name"], run["entities"], run["seconds"], read_models(run["models"]), run.get("note", "")))
    wanted = args.peers.split(",")
    peers = {
        "lambda-learner": ("Lambda Learner 0.1.0 train()", lambda: run_lambda_learner(subset, args.penalty, args.delta, args.factr), subset),
        "scipy": ("scipy L-BFGS-B per entity", lambda: run_scipy(subset, args.penalty, args.delta, args.factr), subset),
        "jax": ("jax + jaxopt L-BFGS, vmapped", lambda: run_jax(entities, args.penalty, args.delta, args.repeats), entities),
    }
    for key in wanted:
        name, solve, solved = peers[key]
        print(f"peers: running {name} on {len(solved)} entities …", file=sys.stderr, flush=True)
        coefs, seconds, note = solve()
        rows.append((name, len(solved), seconds, coefs, note))

    glmix_rate = rows[0][1] / rows[0][2]
    glmix_models = rows[0][3]
    results, disagree = [], []
    header = (f"{'solver':<34} {'entities':>8} {'solve s':>8} {'entities/s':>11} {'glmix ×':>8}"
              f" {'Δ optimum':>10} {'Δ glmix':>9}  note")
    print(header)
    print("-" * len(header))
    for name, count, seconds, coefs, note in rows:
        rate = count / seconds
        worst = max(relative_difference(c, reference[e]) for e, c in coefs.items())
        from_glmix = max(relative_difference(c, glmix_models[e]) for e, c in coefs.items())
        if not worst <= args.tolerance:
            disagree.append(name)
        print(f"{name:<34} {count:>8} {seconds:>8.3f} {rate:>11,.0f} {glmix_rate / rate:>8.1f}"
              f" {worst:>10.2e} {from_glmix:>9.2e}  {note}")
        results.append(dict(solver=name, entities=count, seconds=seconds, entities_per_second=rate,
                            glmix_speedup=glmix_rate / rate, max_relative_difference=worst,
                            max_relative_difference_from_glmix=from_glmix, note=note))
    if args.end_to_end and "lambda-learner" in wanted:
        with open(args.end_to_end) as f:
            whole = [(r["name"], r["entities"], r["seconds"], read_models(r["models"]), r.get("note", ""))
                     for r in json.load(f)]
        print("peers: running Lambda Learner's load-and-update of the file …", file=sys.stderr, flush=True)
        coefs, seconds, note = run_lambda_learner_end_to_end(
            args.data, args.peer_entities, args.penalty, args.delta, args.factr)
        whole.append(("Lambda Learner 0.1.0 load + train()", len(coefs), seconds, coefs, note))
        peer_rate = len(coefs) / seconds
        print()
        header = f"{'end to end (read + update)':<34} {'entities':>8} {'wall s':>8} {'entities/s':>11} {'× LL':>8} {'Δ optimum':>10}  note"
        print(header)
        print("-" * len(header))
        for name, count, seconds, coefs, note in whole:
            rate = count / seconds
            worst = max(relative_difference(c, reference[e]) for e, c in coefs.items())
            if not worst <= args.tolerance:
                disagree.append(name)
            print(f"{name:<34} {count:>8} {seconds:>8.3f} {rate:>11,.0f} {rate / peer_rate:>8.1f} {worst:>10.2e}  {note}")
            results.append(dict(solver=name, end_to_end=True, entities=count, seconds=seconds,
                                entities_per_second=rate, speedup_over_lambda_learner=rate / peer_rate,
                                max_relative_difference=worst, note=note))
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    if disagree:
        print(f"DISAGREE beyond {args.tolerance:g} relative: {', '.join(disagree)}")
        sys.exit(1)
    print(f"all solvers agree with glmix's f64 optimum within {args.tolerance:g} relative")


if __name__ == "__main__":
    main()
