"""glmix: per-entity linear and logistic regressions (GLMix random effects) trained on
Arrow tables or files, with incremental Bayesian updates from a prior.

Every function runs the same library call as the CLI command of the same name, with the
CLI's options as keyword arguments and its defaults, releasing the GIL while it works
on ``threads`` threads (all cores when ``None``; a Spark task should pass the cores it
was given). Records are a pyarrow ``Table``, ``RecordBatch`` or ``RecordBatchReader``
(or anything exporting the Arrow C stream), a pandas ``DataFrame``, or a path to a file
the CLI reads (NTV JSON lines, Parquet, Arrow IPC, Avro). Their columns are the CLI's:
``entity`` (``entity_key``), ``label``, optional ``weight`` and ``offset``, and the
features as an NTV ``features`` list of ``{name, term, value}`` structs, several such
bags (``feature_bags``), or numeric columns (``feature_columns``; a trailing ``*``
takes a prefix).

Models are a pyarrow ``Table`` with one row per entity: ``entity``, ``objective``,
``hessian``, ``means`` and ``variances`` (lists of ``{name, term, value}``; the
intercept is ``("intercept", "intercept")``) and ``precision`` (the diagonal, or the
d×d matrix row-major, in the order of ``means``) — the columns of a Parquet model
file. Bad input raises :class:`GlmixError` with the CLI's message, which names the
file (``<table>`` for a table), the record and the field.

Arrays (a numpy matrix or a scipy.sparse one, with label and entity vectors) become
such a table with :func:`records`.
"""

from . import _glmix
from ._glmix import GlmixError

__all__ = [
    "GlmixError",
    "records",
    "train",
    "score",
    "eval",
    "rank",
    "load_models",
    "save_models",
]


def _records(data):
    """A path as it is, else an object exporting the Arrow C stream."""
    if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__"):
        return data
    import pyarrow as pa

    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if type(data).__module__.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    return data


def records(
    features,
    label=None,
    entity=None,
    *,
    weight=None,
    offset=None,
    timestamp=None,
    feature_names=None,
    entity_key="entity",
):
    """Records from arrays, as a table every function here reads: row ``i`` of
    ``features`` (a 2-D numpy array, or a scipy.sparse matrix) is record ``i``, with
    ``label[i]`` (0 when ``label`` is ``None``: scoring and ranking read no label), entity
    ``entity[i]`` (strings or integers; one entity ``"0"`` when ``None``), and optional
    ``weight``, ``offset`` and ``timestamp`` vectors. Feature ``j`` is named
    ``feature_names[j]`` (default ``x0``, ``x1``, …) with term ``""``; a record holds its
    nonzero values only, as glmix reads wide numeric columns (a zero adds nothing to a
    margin). The table has the columns ``entity_key``, ``label``, the optional ones, and
    an NTV ``features`` list."""
    import numpy as np
    import pyarrow as pa

    if hasattr(features, "tocsr"):
        csr = features.tocsr(copy=True)
        csr.eliminate_zeros()
        csr.sort_indices()
        n, d = csr.shape
        indptr = np.asarray(csr.indptr, dtype=np.int64)
        columns = np.asarray(csr.indices, dtype=np.int64)
        values = np.asarray(csr.data, dtype=np.float64)
    else:
        dense = np.asarray(features, dtype=np.float64)
        if dense.ndim != 2:
            raise GlmixError(f"features: expected a 2-D array, got {dense.ndim} dimensions")
        n, d = dense.shape
        nonzero = dense != 0
        indptr = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))]).astype(np.int64)
        columns = np.nonzero(nonzero)[1].astype(np.int64)
        values = dense[nonzero]
    names = [f"x{j}" for j in range(d)] if feature_names is None else list(feature_names)
    if len(names) != d:
        raise GlmixError(f"feature_names: {len(names)} names for {d} feature columns")

    def vector(name, v, default=None):
        if v is None:
            return None if default is None else pa.array(np.full(n, default))
        a = np.asarray(v)
        if a.shape != (n,):
            raise GlmixError(f"{name}: expected {n} values (one per row), got shape {a.shape}")
        return pa.array(a)

    nnz = len(values)
    bag = pa.StructArray.from_arrays(
        [
            pa.array(names, pa.string()).take(pa.array(columns)),
            pa.array([""], pa.string()).take(pa.array(np.zeros(nnz, dtype=np.int64))),
            pa.array(values, pa.float64()),
        ],
        names=["name", "term", "value"],
    )
    out = {
        entity_key: vector(entity_key, entity) if entity is not None else pa.array(["0"] * n),
        "label": vector("label", label, 0.0),
    }
    for name, v in [("weight", weight), ("offset", offset), ("timestamp", timestamp)]:
        if v is not None:
            out[name] = vector(name, v)
    out["features"] = pa.LargeListArray.from_arrays(pa.array(indptr), bag)
    return pa.table(out)


def _columns(names):
    return None if names is None else [names] if isinstance(names, str) else list(names)


def train(
    data,
    objective,
    *,
    penalty=1.0,
    delta=0.8,
    hessian="diagonal",
    intercept_penalty=True,
    memory=10,
    factr=1e7,
    pgtol=1e-5,
    max_iterations=15000,
    prior=None,
    offset_model=None,
    entity_key="entity",
    feature_columns=None,
    feature_bags=None,
    format=None,
    threads=None,
    summary=False,
):
    """Train one model per entity of ``data``, as ``glmix train`` does.

    ``objective``: ``linear``, ``logistic``, ``bayes-linear`` or ``bayes-logistic``.
    ``prior``: previous models (a model table, a model file or a store): each entity's
    starting point and, for ``bayes-*``, its prior with weight ``delta``; entities of the
    prior that ``data`` lacks are returned unchanged after the trained ones.
    ``offset_model``: a fixed-effect model file whose score is added to each offset.
    Returns the model table, or ``(models, summary)`` with ``summary=True`` (a dict of
    the run's counts and seconds).
    """
    models, run = _glmix.train(
        _records(data),
        objective,
        float(penalty),
        float(delta),
        hessian,
        bool(intercept_penalty),
        int(memory),
        float(factr),
        float(pgtol),
        int(max_iterations),
        _records(prior) if prior is not None else None,
        offset_model,
        entity_key,
        _columns(feature_columns),
        _columns(feature_bags),
        format,
        threads,
    )
    if summary:
        run["reasons"] = dict(run["reasons"])
        return models, run
    return models


def score(
    data,
    models,
    *,
    thompson=None,
    seed=0,
    offset_model=None,
    entity_key="entity",
    feature_columns=None,
    feature_bags=None,
    format=None,
    threads=None,
):
    """Score every record of ``data`` with ``models``, as ``glmix score`` does: a table
    of ``entity``, ``row`` (the 0-based record number) and ``score`` (the margin
    ``offset + x·θ``). ``thompson=t`` scores each record with its own posterior draw
    ``θ̃ ~ N(θ, t·H⁻¹)`` from a stream seeded by ``seed``."""
    return _glmix.score(
        _records(data),
        _records(models),
        None if thompson is None else float(thompson),
        int(seed),
        offset_model,
        entity_key,
        _columns(feature_columns),
        _columns(feature_bags),
        format,
        threads,
    )


def eval(
    data,
    models,
    *,
    metrics=None,
    offset_model=None,
    entity_key="entity",
    feature_columns=None,
    feature_bags=None,
    format=None,
    threads=None,
):
    """Evaluate ``models`` on the labelled records of ``data``, as ``glmix eval`` does: a
    dict of ``auc``, ``rmse``, ``logloss`` and ``entity_auc`` (the mean AUC of the
    entities with both classes) for the ``metrics`` asked (``"auc"``, ``"rmse"``,
    ``"logloss"``, ``"entity-auc"``; by default AUC, log-loss and per-entity AUC when
    every label is 0/1 or −1/1, else RMSE). A metric undefined on the data (AUC with one
    class) is ``None``."""
    return dict(
        _glmix.eval(
            _records(data),
            _records(models),
            _columns(metrics),
            offset_model,
            entity_key,
            _columns(feature_columns),
            _columns(feature_bags),
            format,
            threads,
        )
    )


def rank(
    data,
    models,
    request_key,
    *,
    policy="thompson",
    top=1,
    multiplier=1.0,
    propensity_draws=100,
    alpha=1.0,
    epsilon=0.1,
    seed=0,
    offset_model=None,
    entity_key="entity",
    feature_columns=None,
    feature_bags=None,
    format=None,
    threads=None,
):
    """Rank the candidates of each request of ``data`` (the records sharing a value of
    ``request_key``) by a policy over ``models``' posteriors, as ``glmix rank`` does: a
    table of the shown candidates, ``request``, ``position`` (0 is the top), ``row`` (the
    candidate's 0-based record number), ``entity``, ``score`` (what the policy ordered by)
    and ``propensity`` (the probability of that candidate at that position).

    ``policy``: ``thompson`` (one draw ``θ̃ ~ N(θ, multiplier·Σ)`` per entity of a request;
    propensities from ``propensity_draws`` more draws), ``ucb`` (mean + ``alpha``·sd of the
    margin), ``greedy``, ``epsilon-greedy`` (a random order with probability ``epsilon``)
    or ``random``; ``top`` candidates are shown per request."""
    return _glmix.rank(
        _records(data),
        _records(models),
        request_key,
        policy,
        int(top),
        float(multiplier),
        int(propensity_draws),
        float(alpha),
        float(epsilon),
        int(seed),
        offset_model,
        entity_key,
        _columns(feature_columns),
        _columns(feature_bags),
        format,
        threads,
    )


def load_models(path, *, missing_precision=None):
    """The models of a model file (JSON lines or Parquet) or store, as a model table.
    ``missing_precision``: the precision of coefficients without a variance (an error
    when ``None``)."""
    return _glmix.load_models(path, missing_precision)


def save_models(models, path):
    """Write a model table (or the models of a file) to ``path`` atomically: JSON lines,
    or Parquet when ``path`` ends in ``.parquet``."""
    _glmix.save_models(_records(models), path)
