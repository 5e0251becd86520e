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
"""

from . import _glmix
from ._glmix import GlmixError

__all__ = ["GlmixError", "train", "score", "rank", "load_models", "save_models"]


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
