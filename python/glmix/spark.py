"""Random effects of a Spark DataFrame, trained by glmix inside the Spark tasks.

Each entity's records go to one task through Spark's own Arrow paths, and the task trains
them with :func:`glmix.train` on as many threads as it was given (``threads``, default
1: a task's core). Two paths:

- ``method="map"`` (the default): the records are repartitioned by entity and sorted
  within each partition by Spark, and ``mapInArrow`` trains each partition's entities
  in one glmix call;
- ``method="group"``: ``groupBy(entity).applyInArrow`` trains one entity per call,
  sorting its rows in Python (many more Python calls).

With a ``prior`` (a model DataFrame, as :func:`train` returns it), the records and the
prior are cogrouped by entity (``cogroup(...).applyInArrow``): each entity is updated
from its prior model, and an entity of the prior without records keeps its model.

A model depends on the order of its entity's records (floating-point sums), so the rows
of each entity are sorted before training: by ``order_by`` (column names, e.g. a
timestamp and a record id), else by every column read (label, weight, offset, then the
features). Either way the models do not depend on how the DataFrame is partitioned.

The result is a model DataFrame with the columns of the model table (``entity``,
``objective``, ``hessian``, ``means``, ``variances``, ``precision``); ``glmix.save_models``
takes ``df.toArrow()`` of it. Tested with PySpark 4.3; ``applyInArrow`` (the ``group``
and ``prior`` paths) needs PySpark 4, and 3.5 has not been tried. The executors need the
``glmix`` package: install the wheel on every node, or ship a packed virtual environment
with ``--archives`` and point ``PYSPARK_PYTHON`` at its interpreter.
"""

import glmix

MODEL_SCHEMA = (
    "entity string, objective string, hessian string, "
    "means array<struct<name:string,term:string,value:double>>, "
    "variances array<struct<name:string,term:string,value:double>>, "
    "precision array<double>"
)


def _arrow_schema():
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import _parse_datatype_string

    return to_arrow_schema(_parse_datatype_string(MODEL_SCHEMA))


def _sort_keys(columns, entity_key, order_by):
    if order_by is not None:
        return [order_by] if isinstance(order_by, str) else list(order_by)
    return [c for c in ("label", "response", "weight", "offset") if c in columns] + [
        c for c in columns if c not in (entity_key, "label", "response", "weight", "offset")
    ]


def _sorted(table, keys):
    """`table` in the order Spark sorts `keys` (nested lists compared element-wise)."""
    if table.num_rows < 2:
        return table
    rows = table.to_pylist()

    def key(row):
        return tuple(_comparable(row[k]) for k in keys)

    order = sorted(range(len(rows)), key=lambda i: key(rows[i]))
    return table.take(order)


def _comparable(v):
    # Nulls first, as Spark sorts ascending.
    if v is None:
        return (0,)
    if isinstance(v, list):
        return (1, tuple(_comparable(x) for x in v))
    if isinstance(v, dict):
        return (1, tuple(_comparable(x) for x in v.values()))
    return (1, v)


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
    keys = _sort_keys(df.columns, entity_key, order_by)
    settings = dict(options, entity_key=entity_key, threads=threads)

    def fit(table, prior_table=None, presorted=False):
        if table.num_rows == 0:
            return prior_table.cast(schema) if prior_table is not None else schema.empty_table()
        if not presorted:
            table = _sorted(table, keys)
        if prior_table is not None and prior_table.num_rows == 0:
            prior_table = None
        return glmix.train(table, objective, prior=prior_table, **settings).cast(schema)

    if prior is not None:
        def update(records, models):
            return fit(records, models)

        return (
            df.groupBy(entity_key)
            .cogroup(prior.groupBy("entity"))
            .applyInArrow(update, MODEL_SCHEMA)
        )
    if method == "group":
        def fit_group(table):
            return fit(table)

        return df.groupBy(entity_key).applyInArrow(fit_group, MODEL_SCHEMA)
    if method != "map":
        raise ValueError(f"method {method!r}: expected 'map' or 'group'")

    def fit_partition(batches):
        table = pa.Table.from_batches(list(batches))
        if table.num_rows:
            yield from fit(table, presorted=True).to_batches()

    parts = df.repartition(partitions, entity_key) if partitions else df.repartition(entity_key)
    return parts.sortWithinPartitions(entity_key, *keys).mapInArrow(fit_partition, MODEL_SCHEMA)
