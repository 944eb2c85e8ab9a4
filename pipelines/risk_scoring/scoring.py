"""Batch scoring with a fitted risk PipelineModel: the bad-row policy and its counts.

Policy (never fails on a row; only a missing input column, a schema error, is raised):
- missing value (null or NaN numeric, null category): the numeric gets the training
  median (Imputer), the category the "unknown" embedding row; flag 1 (missing).
- unknown category (a value not seen in training): the "unknown" embedding row
  (StringIndexer handleInvalid="keep"); flag 2 (unknown_category).
- wrong type (a value that does not parse as a number, e.g. "n/a" in a string-typed
  numeric column): treated as missing (try_cast gives null); flag 4 (wrong_type).
Each output row carries `score` = P(bad) and `row_issues` (the sum of its flags);
the summary counts rows per issue from the written Parquet.
"""
import json
import os
import time

from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F

from bigdl_py.atomic import atomic_write_json

ISSUES = {"missing": 1, "unknown_category": 2, "wrong_type": 4}
INFO_FILE = "risk_scoring.json"


def save_scoring_info(model_dir, spec, labels):
    """Beside the saved PipelineModel: the raw columns it reads and the training categories."""
    atomic_write_json(os.path.join(model_dir, INFO_FILE), dict(
        dataset=spec.name, numeric=list(spec.numeric), categorical=list(spec.categorical), labels=labels))


def load_scoring_info(model_dir):
    path = os.path.join(model_dir, INFO_FILE)
    if not os.path.exists(path):
        raise ValueError(f"model {model_dir!r}: expected {INFO_FILE} beside the PipelineModel (written by the "
                         f"risk-scoring job), not found")
    with open(path) as f:
        return json.load(f)


def issue_column(info, schema):
    """A Column: the row's issue flags under the policy above."""
    missing_cols = [c for c in info["numeric"] + info["categorical"] if c not in schema.fieldNames()]
    if missing_cols:
        raise ValueError(f"input: expected the model's input columns {missing_cols}, not found among "
                         f"{schema.fieldNames()}")
    types = {f.name: f.dataType.typeName() for f in schema.fields}
    missing, wrong, unknown = [], [], []
    for c in info["numeric"]:
        raw, parsed = F.col(f"`{c}`"), F.expr(f"try_cast(`{c}` AS DOUBLE)")
        missing.append(raw.isNull() | (F.isnan(raw) if types[c] in ("double", "float") else F.lit(False)))
        wrong.append(raw.isNotNull() & parsed.isNull())
    for c in info["categorical"]:
        raw = F.col(f"`{c}`").cast("string")
        missing.append(raw.isNull())
        unknown.append(raw.isNotNull() & ~raw.isin(info["labels"][c]))

    def any_of(conds):
        out = F.lit(False)
        for cond in conds:
            out = out | F.coalesce(cond, F.lit(False))
        return out

    return sum(F.when(any_of(conds), F.lit(flag)).otherwise(F.lit(0))
               for conds, flag in ((missing, 1), (unknown, 2), (wrong, 4)))


def probability_only(model):
    """The PipelineModel with its network stage computing the probability column alone
    (no prediction, no rawPrediction: less to build in Python and carry back)."""
    from pyspark.ml import PipelineModel

    from bigdl_py.ml import NNClassificationModel

    last = model.stages[-1]
    if not isinstance(last, NNClassificationModel):
        return model
    return PipelineModel(stages=[*model.stages[:-1], last.copy({last.predictionCol: "", last.rawPredictionCol: ""})])


def score(model, df, info, probability_col="probability"):
    """df's columns + `score` (P(bad)) + `row_issues`, lazily."""
    flagged = df.withColumn("row_issues", issue_column(info, df.schema))
    out = probability_only(model).transform(flagged)
    return out.select(*[F.col(f"`{c}`") for c in df.columns],
                      vector_to_array(F.col(probability_col))[1].alias("score"), "row_issues")


def score_to_parquet(model, df, info, output, probability_col="probability"):
    """Score df, write Parquet to `output` (overwritten), and return the summary with counts."""
    start = time.perf_counter()
    score(model, df, info, probability_col).write.mode("overwrite").parquet(output)
    wall = time.perf_counter() - start
    written = df.sparkSession.read.parquet(output)
    row = written.agg(F.count(F.lit(1)).alias("rows"),
                      *[F.sum(F.when((F.col("row_issues").bitwiseAND(flag)) > 0, 1).otherwise(0)).alias(name)
                        for name, flag in ISSUES.items()],
                      F.sum(F.when(F.col("row_issues") > 0, 1).otherwise(0)).alias("rows_with_issues"),
                      F.sum(F.when(F.isnan("score") | F.col("score").isNull(), 1).otherwise(0))
                      .alias("unscored")).first().asDict()
    rows = int(row.pop("rows"))
    return dict(output=output, rows=rows, wall_s=wall, rows_s=rows / wall, **{k: int(v or 0) for k, v in row.items()})
