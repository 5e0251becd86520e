"""Avro files written by fastavro, for tests/avro.rs and tests/photon.rs.

usage:
  write_avro.py records RECORDS.jsonl DIR   TrainingExampleAvro parts of the records:
      DIR/part-00000.avro (snappy) and DIR/part-00001.avro (deflate), the entity in
      metadataMap["user"], features x0..x2 in the bag `features` and the others in `more`.
  write_avro.py photon DIR                  a Photon-ML GAME model directory: fixed effect
      `global` (shard `shard1`), random effect `per-user` (type `userId`, shard `shard2`)
      in two snappy parts, with the intercept as ("(INTERCEPT)", ""); prints the models
      as JSON.
  write_avro.py read FILE...                prints the records of Avro files as JSON.
"""
import json
import os
import random
import sys

import fastavro

NS = "com.linkedin.photon.avro.generated"
FEATURE = {"name": "FeatureAvro", "type": "record", "fields": [
    {"name": "name", "type": "string"}, {"name": "term", "type": "string"},
    {"name": "value", "type": "double"}]}
TRAINING = {"name": "TrainingExampleAvro", "namespace": NS, "type": "record", "fields": [
    {"default": None, "name": "uid", "type": ["null", "string"]},
    {"name": "label", "type": "double"},
    {"name": "features", "type": {"items": FEATURE, "type": "array"}},
    {"name": "more", "type": {"items": "FeatureAvro", "type": "array"}},
    {"default": None, "name": "metadataMap", "type": ["null", {"type": "map", "values": "string"}]},
    {"default": None, "name": "weight", "type": ["null", "double"]},
    {"default": None, "name": "offset", "type": ["null", "double"]}]}
NTV = {"name": "NameTermValueAvro", "type": "record", "fields": [
    {"name": "name", "type": "string"}, {"name": "term", "type": "string"},
    {"name": "value", "type": "double"}]}
MODEL = {"name": "BayesianLinearModelAvro", "namespace": NS, "type": "record", "fields": [
    {"name": "modelId", "type": "string"},
    {"default": None, "name": "modelClass", "type": ["null", "string"]},
    {"name": "means", "type": {"items": NTV, "type": "array"}},
    {"default": None, "name": "variances", "type": ["null", {"items": "NameTermValueAvro", "type": "array"}]},
    {"default": None, "name": "lossFunction", "type": ["null", "string"]}]}
LOGISTIC = "com.linkedin.photon.ml.supervised.classification.LogisticRegressionModel"


def records(source, out):
    with open(source) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    out_rows = []
    for i, r in enumerate(rows):
        feats = [{"name": x["name"], "term": x["term"], "value": x["value"]} for x in r["features"]]
        out_rows.append({
            "uid": str(i), "label": float(r["label"]),
            "features": [x for x in feats if x["name"] in ("x0", "x1", "x2")],
            "more": [x for x in feats if x["name"] not in ("x0", "x1", "x2")],
            "metadataMap": {"user": r["entity"], "other": "ignored"},
            "weight": r["weight"], "offset": r["offset"]})
    os.makedirs(out, exist_ok=True)
    schema = fastavro.parse_schema(TRAINING)
    half = len(out_rows) // 2
    for name, part, codec in (("part-00000.avro", out_rows[:half], "snappy"),
                              ("part-00001.avro", out_rows[half:], "deflate")):
        with open(os.path.join(out, name), "wb") as f:
            fastavro.writer(f, schema, part, codec=codec, sync_interval=4000)
    open(os.path.join(out, "_SUCCESS"), "w").close()


def photon(root):
    rng = random.Random(7)
    def ntv(keys):
        return [{"name": n, "term": t, "value": rng.uniform(-2, 2)} for n, t in keys]
    def variances(means):
        return [{"name": m["name"], "term": m["term"], "value": rng.uniform(0.01, 3)} for m in means]
    fixed_keys = [("(INTERCEPT)", ""), ("age", "young"), ("age", "old"), ("genre", "drama")]
    fixed_means = ntv(fixed_keys)
    fixed = {"modelId": "fixed-effect", "modelClass": LOGISTIC, "means": fixed_means,
             "variances": variances(fixed_means), "lossFunction": ""}
    users = []
    for u in range(30):
        means = ntv([("(INTERCEPT)", ""), ("item", str(u % 4)), ("item", str(u % 4 + 1))])
        users.append({"modelId": f"user{u}", "modelClass": LOGISTIC, "means": means,
                      # Some models without variances, as a trainer without them writes.
                      "variances": None if u % 5 == 4 else variances(means),
                      "lossFunction": ""})
    schema = fastavro.parse_schema(MODEL)
    def write(dir_, name, recs):
        os.makedirs(dir_, exist_ok=True)
        with open(os.path.join(dir_, name), "wb") as f:
            fastavro.writer(f, schema, recs, codec="snappy")
    fe = os.path.join(root, "fixed-effect", "global")
    write(os.path.join(fe, "coefficients"), "part-00000.avro", [fixed])
    with open(os.path.join(fe, "id-info"), "w") as f:
        f.write("shard1\n")
    re_ = os.path.join(root, "random-effect", "per-user")
    write(os.path.join(re_, "coefficients"), "part-00000.avro", users[:17])
    write(os.path.join(re_, "coefficients"), "part-00001.avro", users[17:])
    open(os.path.join(re_, "coefficients", "_SUCCESS"), "w").close()
    with open(os.path.join(re_, "id-info"), "w") as f:
        f.write("userId\nshard2\n")
    with open(os.path.join(root, "model-metadata.json"), "w") as f:
        json.dump({"modelType": "LOGISTIC_REGRESSION", "modelName": "fastavro"}, f)
    print(json.dumps({"global": [fixed], "per-user": users}))


def read(paths):
    out = []
    for p in paths:
        with open(p, "rb") as f:
            out.extend(fastavro.reader(f))
    print(json.dumps(out))


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"records": lambda: records(*args), "photon": lambda: photon(*args),
     "read": lambda: read(args)}[command]()
