"""Random effects of a Spark DataFrame, trained by glmix inside the Spark tasks.

Each entity's records go to one task through Spark's own Arrow paths, and the task trains
them with :func:`glmix.train` on as many threads as it was given (``threads``, default
1: a task's core). Two paths:

- ``method="map"`` (the default): the records are repartitioned by entity, and
  ``mapInArrow`` sorts each partition (pyarrow) and trains its entities in one glmix
  call;
- ``method="group"``: ``groupBy(entity).applyInArrow`` trains one entity per call (many
  more Python calls).

With a ``prior`` (a model DataFrame, as :func:`train` returns it), the records and the
prior are cogrouped by entity (``cogroup(...).applyInArrow``): each entity is updated
from its prior model, and an entity of the prior without records keeps its model.

A model depends on the order of its entity's records (floating-point sums), so the rows
of each entity are sorted before training: by ``order_by`` (column names, e.g. a
timestamp and a record id; scalar columns), else by a hash of the row (Spark's
``xxhash64`` of its columns; rows of equal hash keep their order). Either way the models
do not depend on how the DataFrame is partitioned.

:func:`game_train` trains a GAME model (a fixed effect and random effects, by coordinate
descent) from ``glmix game train``'s configuration: the fixed effect by L-BFGS-B on the
driver from partial sums that each partition returns, the random effects by :func:`train`.

:func:`score` scores a record DataFrame with a model DataFrame the same way: the records
and the models are cogrouped by entity and each group is scored by :func:`glmix.score`
(the margin ``offset + x·θ`` under the means; a record whose entity has no model scores
its offset), so a record's score does not depend on the partitioning either.

The result of :func:`train` is a model DataFrame with the columns of the model table (``entity``,
``objective``, ``hessian``, ``means``, ``variances``, ``precision``, ``last_seen``); ``glmix.save_models``
takes :func:`to_arrow` of it (``df.toArrow()`` on PySpark 4). Tested with PySpark 4.3
and 3.5.9: PySpark 3.5 has no ``applyInArrow``, so there the ``group``, ``prior`` and
:func:`score` paths hand each group to glmix through ``applyInPandas`` (pandas frames
converted to Arrow and back), and :func:`from_arrow` and :func:`to_arrow` move tables
through Spark's own Arrow conversions. The executors need the ``glmix`` package: install
the wheel on every node, or ship a packed virtual environment with ``--archives`` and
point ``PYSPARK_PYTHON`` at its interpreter.
"""

import glmix

# The column of the rows' hash, added to sort them when no order is given.
ORDER = "__glmix_order"

MODEL_SCHEMA = (
    "entity string, objective string, hessian string, "
    "means array<struct<name:string,term:string,value:double>>, "
    "variances array<struct<name:string,term:string,value:double>>, "
    "precision array<double>, last_seen double"
)


def from_arrow(spark, table):
    """A DataFrame of the pyarrow ``table`` (``spark.createDataFrame(table)`` on PySpark 4;
    from its rows as Python objects, with the table's schema, on 3.5)."""
    import pyspark

    if int(pyspark.__version__.split(".")[0]) >= 4:
        return spark.createDataFrame(table)
    from pyspark.sql.pandas.types import from_arrow_schema

    return spark.createDataFrame(table.to_pylist(), schema=from_arrow_schema(table.schema))


def to_arrow(df):
    """The DataFrame ``df`` collected as a pyarrow table (``df.toArrow()`` on PySpark 4;
    Spark's Arrow collection on 3.5)."""
    import pyarrow as pa

    if hasattr(df, "toArrow"):
        return df.toArrow()
    from pyspark.sql.pandas.types import to_arrow_schema

    batches = df._collect_as_arrow()
    return pa.Table.from_batches(batches, schema=to_arrow_schema(df.schema))


def _apply(grouped, fn, schema, *inputs):
    """``grouped.applyInArrow(fn, schema)`` (grouped or cogrouped data, PySpark 4), or the
    same through pandas frames on PySpark 3.5; ``inputs``: the DataFrames grouped (one,
    or the two cogrouped), whose schemas turn the frames back into Arrow tables."""
    if hasattr(grouped, "applyInArrow"):
        return grouped.applyInArrow(fn, schema)
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    schemas = [to_arrow_schema(df.schema) for df in inputs]

    def table(frame, schema):
        # Nested structs arrive as Rows (tuples); the schema says what they are.
        return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)

    # Spark tells a cogroup's function from a group's by its number of arguments.
    if len(inputs) == 2:
        def via_pandas(left, right):
            return fn(table(left, schemas[0]), table(right, schemas[1])).to_pandas()
    else:
        def via_pandas(frame):
            return fn(table(frame, schemas[0])).to_pandas()

    return grouped.applyInPandas(via_pandas, schema)


def _arrow_schema():
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import _parse_datatype_string

    return to_arrow_schema(_parse_datatype_string(MODEL_SCHEMA))


def _as_model_table(table, schema):
    """`table` with the model schema's columns; a model table written before `last_seen`
    existed gets it as nulls."""
    import pyarrow as pa

    if "last_seen" not in table.column_names:
        table = table.append_column("last_seen", pa.nulls(table.num_rows, pa.float64()))
    return table.cast(schema)


def _sorted(table, keys):
    """`table` sorted by the scalar columns `keys` (pyarrow's stable sort)."""
    return table.sort_by([(k, "ascending") for k in keys])


def train(
    df,
    objective,
    *,
    entity_key="entity",
    prior=None,
    order_by=None,
    method="map",
    partitions=None,
    threads=1,
    **options,
):
    """Train one model per entity of the DataFrame ``df`` (the columns of
    :func:`glmix.train`'s records) with the options of :func:`glmix.train`; returns a
    model DataFrame. ``partitions``: the number of partitions of the ``map`` path
    (default: Spark's ``spark.sql.shuffle.partitions``)."""
    import pyarrow as pa

    schema = _arrow_schema()
    if order_by is None:
        from pyspark.sql import functions as F

        df = df.withColumn(ORDER, F.xxhash64(*[c for c in df.columns if c != entity_key]))
        keys = [ORDER]
    else:
        keys = [order_by] if isinstance(order_by, str) else list(order_by)
    settings = dict(options, entity_key=entity_key, threads=threads)

    def fit(table, prior_table=None, by_entity=False):
        if table.num_rows == 0:
            if prior_table is None:
                return schema.empty_table()
            return _as_model_table(prior_table, schema)
        table = _sorted(table, [entity_key, *keys] if by_entity else keys)
        if ORDER in table.column_names:
            table = table.drop_columns([ORDER])
        if prior_table is not None and prior_table.num_rows == 0:
            prior_table = None
        return _as_model_table(glmix.train(table, objective, prior=prior_table, **settings), schema)

    if prior is not None:
        def update(records, models):
            return fit(records, models)

        grouped = df.groupBy(entity_key).cogroup(prior.groupBy("entity"))
        return _apply(grouped, update, MODEL_SCHEMA, df, prior)
    if method == "group":
        def fit_group(table):
            return fit(table)

        return _apply(df.groupBy(entity_key), fit_group, MODEL_SCHEMA, df)
    if method != "map":
        raise ValueError(f"method {method!r}: expected 'map' or 'group'")

    def fit_partition(batches):
        table = pa.Table.from_batches(list(batches))
        if table.num_rows:
            yield from fit(table, by_entity=True).to_batches()

    parts = df.repartition(partitions, entity_key) if partitions else df.repartition(entity_key)
    return parts.mapInArrow(fit_partition, MODEL_SCHEMA)


def score(df, models, *, entity_key="entity", keep=None, threads=1, **options):
    """Score every record of ``df`` with the model DataFrame ``models`` (as :func:`train`
    returns it, or read from a model file): a DataFrame of the ``keep`` columns of
    ``df`` (default: every column but the feature lists) and ``score``, one row per
    record. ``options``: the records options of :func:`glmix.score` (``feature_columns``,
    ``feature_bags``, ``offset_model``); Thompson draws are not offered here, as a draw
    per record would depend on how the records are grouped."""
    import pyarrow as pa
    from pyspark.sql.types import DoubleType, StructField, StructType

    if "thompson" in options:
        raise ValueError("glmix.spark.score scores by the means: Thompson draws are not offered")
    bags = set(options.get("feature_bags") or ["features"])
    if keep is None:
        keep = [f.name for f in df.schema.fields if f.name not in bags]
    out = StructType([df.schema[c] for c in keep] + [StructField("score", DoubleType(), False)])
    out_arrow = pa.schema([pa.field(f.name, _arrow_type(f), f.nullable) for f in out.fields])
    settings = dict(options, entity_key=entity_key, threads=threads)

    def score_group(records, group_models):
        if records.num_rows == 0:
            return out_arrow.empty_table()
        scores = glmix.score(records, group_models, **settings)
        rows = scores.column("row")
        columns = [records.column(c).take(rows) for c in keep] + [scores.column("score")]
        return pa.Table.from_arrays(columns, schema=out_arrow)

    grouped = df.groupBy(entity_key).cogroup(models.groupBy("entity"))
    return _apply(grouped, score_group, out, df, models)


def _arrow_type(field):
    from pyspark.sql.pandas.types import to_arrow_type

    return to_arrow_type(field.dataType)


# Columns the GAME driver adds to the records: a row id and each coordinate's scores.
ROW = "__glmix_row"


def _score_column(k):
    return f"__glmix_score_{k}"


def game_train(df, config, *, order_by=None, threads=1):
    """Train a GAME model on the DataFrame ``df`` by coordinate descent, as ``glmix game
    train --config`` does on a file: ``config`` is that JSON configuration (a path or a
    dict; the records carry each random effect's ``entity_key`` column). Returns a dict
    of a model DataFrame per coordinate, in configuration order.

    Each pass trains the coordinates in order, each on the offsets the others leave
    (``offset`` plus their scores, kept per record in columns of a cached DataFrame). The
    fixed effect is fitted on the driver by L-BFGS-B (scipy) from partial sums: every
    evaluation is one Spark job in which each partition returns its loss and gradient
    (``glmix.game.partial``), the driver adds the penalty; its precision is the summed
    Hessian diagonal plus the penalty. A random effect is :func:`train` by entity, warm
    started from its previous pass, and scored with :func:`score`. ``order_by`` orders
    each entity's records as in :func:`train` (give the records' file order to match the
    CLI). Per-entity data controls (``min_rows`` above 1, ``max_rows``) and precisions
    other than diagonal for the fixed effect are not offered here."""
    import json

    from pyspark.sql import functions as F

    if not isinstance(config, dict):
        with open(config) as f:
            config = json.load(f)
    sets = config["feature_sets"]
    coordinates = config["coordinates"]
    for c in coordinates:
        if c.get("min_rows", 1) != 1 or c.get("max_rows") is not None:
            raise glmix.GlmixError(f"coordinate {c['name']!r}: min_rows and max_rows are not offered on Spark")
        if c["type"] == "fixed" and c.get("hessian", "diagonal") != "diagonal":
            raise glmix.GlmixError(f"coordinate {c['name']!r}: a fixed effect keeps a diagonal precision on Spark")
    base = F.col("offset") if "offset" in df.columns else F.lit(0.0)
    weight = F.col("weight") if "weight" in df.columns else F.lit(1.0)
    state = df.withColumn("offset", base.cast("double")).withColumn("weight", weight.cast("double"))
    state = state.withColumn(ROW, F.monotonically_increasing_id())
    for k in range(len(coordinates)):
        state = state.withColumn(_score_column(k), F.lit(0.0))
    state = state.cache()
    order = [order_by] if isinstance(order_by, str) else order_by
    models = [None] * len(coordinates)
    for _ in range(config.get("passes", 1)):
        for k, c in enumerate(coordinates):
            others = [F.col(_score_column(j)) for j in range(len(coordinates)) if j != k]
            offset = sum(others, F.col("offset"))
            names = sets[c["feature_set"]]
            features = F.filter("features", lambda f: f["name"].isin(names)).alias("features")
            if c["type"] == "fixed":
                view = state.select(F.lit(c["name"]).alias("entity"), "label", "weight",
                                    offset.alias("offset"), features, ROW)
                models[k], scores = _fixed_effect(view, c, models[k])
            else:
                key = c["entity_key"]
                keep = [key, "label", "weight", offset.alias("offset"), features, ROW]
                keep += [o for o in order or [] if o not in (key, ROW)]
                view = state.select(*keep)
                settings = {o: c[o] for o in ("penalty", "intercept_penalty", "hessian", "memory",
                                               "factr", "pgtol", "max_iterations") if o in c}
                models[k] = train(view.drop(ROW), c["objective"], entity_key=key, prior=models[k],
                                  order_by=order, threads=threads, **settings).cache()
                zero = view.withColumn("offset", F.lit(0.0))
                scores = score(zero, models[k], entity_key=key, keep=[ROW], threads=threads)
            scores = scores.withColumnRenamed("score", _score_column(k))
            state = state.drop(_score_column(k)).join(scores, ROW).cache()
    return {c["name"]: m for c, m in zip(coordinates, models)}


def _fixed_effect(view, c, previous):
    """The fixed effect of coordinate ``c`` on ``view`` (entity, label, weight, offset,
    features, row id) from partial sums, warm-started from ``previous``; returns its model
    DataFrame and a DataFrame of each row's score."""
    import numpy as np
    import pyarrow as pa
    from pyspark.sql import functions as F
    from scipy.optimize import minimize

    spark = view.sparkSession
    pairs = view.select(F.explode("features").alias("f")).select("f.name", "f.term").distinct()
    keys = [("intercept", "intercept")] + sorted((r["name"], r["term"]) for r in pairs.collect())
    objective = c["objective"]
    penalty = float(c.get("penalty", 1.0))
    penalised = np.array([c.get("intercept_penalty", True) or k != ("intercept", "intercept")
                          for k in keys], dtype=float) * penalty
    records = view.drop(ROW)

    def sums(theta, with_hessian):
        def partition(batches):
            table = pa.Table.from_batches(list(batches))
            if table.num_rows == 0:
                return
            loss, grad, hess, _ = glmix._glmix.fixed_effect_sums(
                table, keys, list(theta), objective, with_hessian, "entity")
            yield pa.RecordBatch.from_pydict({
                "loss": [loss], "gradient": [grad], "hessian": [hess or []]})

        rows = records.mapInArrow(
            partition, "loss double, gradient array<double>, hessian array<double>").collect()
        loss = sum(r["loss"] for r in rows)
        grad = np.sum([np.array(r["gradient"]) for r in rows], axis=0)
        hess = np.sum([np.array(r["hessian"]) for r in rows], axis=0) if with_hessian else None
        return loss, grad, hess

    def objective_and_gradient(theta):
        loss, grad, _ = sums(theta, False)
        return loss + 0.5 * np.sum(penalised * theta * theta), grad + penalised * theta

    start = np.zeros(len(keys))
    if previous is not None:
        means = {(m["name"], m["term"]): m["value"] for m in to_arrow(previous).to_pylist()[0]["means"]}
        start = np.array([means.get(k, 0.0) for k in keys])
    eps = np.finfo(float).eps
    fit = minimize(objective_and_gradient, start, jac=True, method="L-BFGS-B", options={
        "maxcor": int(c.get("memory", 10)), "ftol": float(c.get("factr", 1e7)) * eps,
        "gtol": float(c.get("pgtol", 1e-5)), "maxiter": int(c.get("max_iterations", 15000)),
    })
    theta = fit.x
    _, _, hess = sums(theta, True)
    precision = hess + penalised
    coefficient = lambda values: [{"name": n, "term": t, "value": float(v)}  # noqa: E731
                                  for (n, t), v in zip(keys, values)]
    model = pa.table({
        "entity": [c["name"]], "objective": [objective], "hessian": ["diagonal"],
        "means": [coefficient(theta)], "variances": [coefficient(1.0 / precision)],
        "precision": [[float(p) for p in precision]], "last_seen": pa.array([None], pa.float64()),
    })
    model_df = from_arrow(spark, _as_model_table(model, _arrow_schema()))

    def scored(batches):
        for batch in batches:
            table = pa.Table.from_batches([batch])
            if table.num_rows == 0:
                continue
            _, _, _, s = glmix._glmix.fixed_effect_sums(
                table.drop_columns([ROW]), keys, list(theta), objective, False, "entity")
            yield pa.RecordBatch.from_pydict({ROW: batch.column(ROW), "score": s})

    return model_df, view.mapInArrow(scored, f"{ROW} long, score double")
