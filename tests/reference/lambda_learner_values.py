"""Independent reference values for tests/shared_data.rs.

Computes, with numpy only (Newton's method / a direct solve, not L-BFGS and not glmix),
the exact optima of the Lambda Learner fixture problems of ../shared/data/lambda-learner:

1. logistic, λ = 10, on mock-ntv-data-1k.json (entity key uid);
2. bayes-logistic, λ = 10, δ = 0.8: prior = the logistic optimum on records 1–500 with
   the diagonal precision diag(Xᵀ D X) + λ, update on records 501–1000;
3. linear, λ = 10, on the MovieLens user-359 training TSV with offsets from the
   fixed-effect model, and the test-set RMSE of offset + x·θ.

Run: python3 tests/reference/lambda_learner_values.py ../shared/data/lambda-learner
"""
import json
import sys

import numpy as np

LAM, DELTA = 10.0, 0.8


def read_ntv(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    index = {("intercept", "intercept"): 0}
    for r in rows:
        for f in r["features"]:
            index.setdefault((f["name"], f["term"]), len(index))
    X = np.zeros((len(rows), len(index)))
    X[:, 0] = 1.0
    for i, r in enumerate(rows):
        for f in r["features"]:
            X[i, index[(f["name"], f["term"])]] += f["value"]
    y = np.array([1.0 if r["label"] == 1.0 else -1.0 for r in rows])
    o = np.array([r.get("offset", 0.0) for r in rows])
    return X, y, o, index


def softplus(z):
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def newton_logistic(X, y, o, pen, mean0, Q):
    """argmin Σ log(1+exp(−y m)) + ½ Σ pen θ² + ½ (θ−θ₀)ᵀ Q (θ−θ₀)."""
    th = mean0.copy()
    for _ in range(100):
        m = o + X @ th
        s = 1 / (1 + np.exp(y * m))  # σ(−y m)
        g = X.T @ (-y * s) + pen * th + Q @ (th - mean0)
        p = 1 / (1 + np.exp(-m))
        H = X.T @ (X * (p * (1 - p))[:, None]) + np.diag(pen) + Q
        step = np.linalg.solve(H, g)
        th -= step
        if np.abs(step).max() < 1e-14:
            break
    f = softplus(-y * (o + X @ th)).sum() + 0.5 * (pen * th * th).sum() + 0.5 * (th - mean0) @ Q @ (th - mean0)
    return th, f


def main(root):
    X, y, o, index = read_ntv(f"{root}/mock-ntv-data-1k.json")
    d = X.shape[1]
    names = [k for k, _ in sorted(index.items(), key=lambda kv: kv[1])]
    th, f = newton_logistic(X, y, o, np.full(d, LAM), np.zeros(d), np.zeros((d, d)))
    print("logistic loss", repr(f))
    for k, v in zip(names, th):
        print("  ", k, repr(v))

    # Bayesian update: prior from the first 500 records, update on the last 500.
    a, b = slice(0, 500), slice(500, 1000)
    # Features seen in each half (the per-entity projection); the full index covers both.
    th0, _ = newton_logistic(X[a], y[a], o[a], np.full(d, LAM), np.zeros(d), np.zeros((d, d)))
    m = o[a] + X[a] @ th0
    p = 1 / (1 + np.exp(-m))
    h0 = (X[a] ** 2 * (p * (1 - p))[:, None]).sum(0) + LAM
    seen_a = np.abs(X[a]).sum(0) > 0
    seen_b = np.abs(X[b]).sum(0) > 0
    print("first-half features", [names[j] for j in range(d) if seen_a[j]])
    print("second-half features", [names[j] for j in range(d) if seen_b[j]])
    # Coefficients absent from the first half have no prior: mean 0, precision λ (cold).
    h0 = np.where(seen_a, h0, LAM)
    th0 = np.where(seen_a, th0, 0.0)
    keep = seen_b.copy()
    keep[0] = True
    idx = np.where(keep)[0]
    Q = np.diag(DELTA * h0[idx])
    th1, f1 = newton_logistic(X[b][:, idx], y[b], o[b], np.full(len(idx), (1 - DELTA) * LAM), th0[idx], Q)
    print("bayes-logistic loss", repr(f1))
    for j, v in zip(idx, th1):
        print("  ", names[j], repr(v))
    for j in range(d):
        if seen_a[j] and not keep[j]:
            print("   kept from prior", names[j], repr(th0[j]))

    # Linear, MovieLens user 359.
    beta = np.array([float(l) for l in open(f"{root}/movie-lense-initital-fixed-effect-model") if l.strip()])
    tr = np.loadtxt(f"{root}/movie-lense-training-data-u359")
    te = np.loadtxt(f"{root}/movie-lense-test-data-u359")
    def design(a):
        return np.hstack([np.ones((len(a), 1)), a[:, 2:]]), a[:, 1]
    Xt, yt = design(tr)
    Xs, ys = design(te)
    ot, os_ = Xt @ beta, Xs @ beta
    th = np.linalg.solve(Xt.T @ Xt + LAM * np.eye(Xt.shape[1]), Xt.T @ (yt - ot))
    print("linear coefficients", [repr(v) for v in th])
    print("linear train loss", repr(0.5 * ((ot + Xt @ th - yt) ** 2).sum() + 0.5 * LAM * th @ th))
    print("test RMSE offsets only", repr(np.sqrt(np.mean((os_ - ys) ** 2))))
    print("test RMSE with random effect", repr(np.sqrt(np.mean((os_ + Xs @ th - ys) ** 2))))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/lambda-learner")
