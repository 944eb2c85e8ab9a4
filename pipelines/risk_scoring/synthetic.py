"""Synthetic applications drawn from a real table's marginals, generated on the executors.

`fit_marginals` summarises each column of the real table: numeric columns by their
missing rate and 101 quantiles (sampled by inverse CDF, rounded when the column holds
whole numbers), categorical ones by value frequencies and missing rate. The summary is
a small JSON-able dict, so `generate` ships it to the executors, where each Arrow
batch of `spark.range` ids becomes rows sampled with a generator seeded by (seed,
first id): the same (rows, partitions, seed) gives the same rows, and no row passes
through the driver. Columns are drawn independently (marginals only).

`bad_fraction` > 0 plants bad rows for the scoring policy: unseen categories and
missing numerics, each in about that share of rows.
"""
import numpy as np

QUANTILES = np.linspace(0.0, 1.0, 101)
UNSEEN = "__unseen__"


def fit_marginals(table, spec):
    """JSON-able marginals of the spec's raw columns in a pandas table."""
    numeric, categorical = {}, {}
    for c in spec.numeric:
        values = table[c].to_numpy(dtype=np.float64)
        present = values[np.isfinite(values)]
        if present.size == 0:
            raise ValueError(f"column {c!r}: expected some non-missing values to fit, all {values.size} are missing")
        numeric[c] = dict(missing=float(1 - present.size / values.size),
                          quantiles=np.quantile(present, QUANTILES).tolist(),
                          integer=bool(np.all(present == np.round(present))))
    for c in spec.categorical:
        counts = table[c].dropna().astype(str).value_counts()
        categorical[c] = dict(missing=float(table[c].isna().mean()), values=counts.index.tolist(),
                              probs=(counts / counts.sum()).tolist())
    return dict(numeric=numeric, categorical=categorical, order=list(table.columns.intersection(
        list(spec.numeric) + list(spec.categorical))))


def spark_schema(marginals):
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    return StructType([StructField(c, DoubleType() if c in marginals["numeric"] else StringType())
                       for c in marginals["order"]])


def sample_batch(marginals, n, rng, bad_fraction=0.0):
    """{column: array} of n sampled rows: numerics float64 with NaN for missing,
    categoricals as (codes int32, values list) with code -1 for missing."""
    out = {}
    for c in marginals["order"]:
        if c in marginals["numeric"]:
            m = marginals["numeric"][c]
            v = np.interp(rng.random(n), QUANTILES, m["quantiles"])
            if m["integer"]:
                v = np.round(v)
            v[rng.random(n) < m["missing"] + bad_fraction] = np.nan
            out[c] = v
        else:
            m = marginals["categorical"][c]
            codes = np.searchsorted(np.cumsum(m["probs"]), rng.random(n) * (1 - 1e-12), side="right")
            codes[rng.random(n) < bad_fraction] = len(m["values"])  # the UNSEEN value
            codes[rng.random(n) < m["missing"]] = -1
            out[c] = (codes.astype(np.int32), m["values"] + [UNSEEN])
    return out


def to_arrow(cols, marginals):
    """An Arrow RecordBatch of sample_batch output (strings through a dictionary: no Python objects)."""
    import pyarrow as pa

    arrays = []
    for c in marginals["order"]:
        if c in marginals["numeric"]:
            arrays.append(pa.array(cols[c], type=pa.float64(), from_pandas=True))
        else:
            codes, values = cols[c]
            indices = pa.array(codes, mask=codes < 0)
            arrays.append(pa.DictionaryArray.from_arrays(indices, pa.array(values, pa.string())).cast(pa.string()))
    return pa.RecordBatch.from_arrays(arrays, names=marginals["order"])


def _generator(marginals, seed, bad_fraction):
    def generate_batches(batches):
        for batch in batches:
            ids = batch.column(0).to_numpy()
            if ids.size:
                rng = np.random.default_rng([seed, int(ids[0])])
                yield to_arrow(sample_batch(marginals, ids.size, rng, bad_fraction), marginals)
    return generate_batches


def generate(spark, marginals, rows, partitions, seed=0, bad_fraction=0.0):
    """A DataFrame of `rows` synthetic applications in `partitions` partitions (lazy)."""
    if not (isinstance(rows, (int, np.integer)) and rows >= 1 and isinstance(partitions, (int, np.integer))
            and partitions >= 1):
        raise ValueError(f"generate: expected rows >= 1 and partitions >= 1, received rows={rows!r} "
                         f"partitions={partitions!r}")
    if not 0.0 <= bad_fraction < 1.0:
        raise ValueError(f"bad_fraction: expected a share in [0, 1), received {bad_fraction!r}")
    ids = spark.range(0, int(rows), numPartitions=int(partitions))
    return ids.mapInArrow(_generator(marginals, int(seed), float(bad_fraction)), spark_schema(marginals))
