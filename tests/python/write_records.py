"""Write NTV JSON-lines records as Parquet with pyarrow, for tests/parquet.rs.

usage: write_records.py RECORDS.jsonl NTV.parquet WIDE.parquet

NTV.parquet holds a `features` list<struct<name, term, value>> column (snappy, pyarrow's
default); WIDE.parquet one float column per feature name, 0.0 where a record lacks it
(gzip). Both have entity, label, weight and offset columns as pyarrow infers them from
the JSON values (integer labels stay int64), in row groups of 100 rows.
"""
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq

source, ntv_path, wide_path = sys.argv[1:4]
with open(source) as f:
    rows = [json.loads(line) for line in f if line.strip()]
base = {key: [r[key] for r in rows] for key in ("entity", "label", "weight", "offset")}
ntv = dict(base)
ntv["features"] = [
    [{"name": x["name"], "term": x["term"], "value": x["value"]} for x in r["features"]]
    for r in rows
]
pq.write_table(pa.table(ntv), ntv_path, row_group_size=100)
names = sorted({x["name"] for r in rows for x in r["features"]})
wide = dict(base)
for name in names:
    wide[name] = [
        float(next((x["value"] for x in r["features"] if x["name"] == name), 0.0))
        for r in rows
    ]
pq.write_table(pa.table(wide), wide_path, row_group_size=100, compression="gzip")
