"""Training data on executors: DataFrame -> Arrow -> numpy, converted once per partition.

`materialize_dataframe` runs one Spark job that converts every partition through
Arrow (`mapInArrow`, no Python row objects) into a float32 feature matrix and a
label vector, checks them (nulls, wrong length, NaN/Inf) and writes them as `.npy`
files under a per-run folder on the executor's disk. Training tasks then map those
files (`np.load(mmap_mode="r")`, shared by all Python workers of the machine through
the page cache) instead of deserialising the partition again every iteration.
Bad rows are counted per column and cause, and either fail the run (policy
"error", the default) or are dropped and reported (policy "skip").
"""
import os
import tempfile
import uuid

import numpy as np

from bigdl_py.atomic import atomic_write_bytes

POLICIES = ("error", "skip")
_LOADED = {}  # (run_dir, partition) -> (x, y), per Python worker


class PartitionedData:
    """Where the converted partitions live and what the conversion found."""

    def __init__(self, run_dir, sizes, bad, feature_shape, label_range):
        self.run_dir = run_dir
        self.sizes = sizes
        self.bad = bad  # {cause: count}
        self.feature_shape = feature_shape
        self.label_range = label_range  # (min, max) over kept rows, or None

    @property
    def num_partitions(self):
        return len(self.sizes)


def default_cache_root():
    return os.path.join(tempfile.gettempdir(), "bigdl_py-data")


def _feature_array_column(df, features_col):
    """A Column of array<float> from a vector, an array, or a list of numeric columns."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, NumericType

    names = [features_col] if isinstance(features_col, str) else list(features_col)
    fields = {f.name: f.dataType for f in df.schema.fields}
    for name in names:
        if name not in fields:
            raise ValueError(f"features column {name!r} not found; the DataFrame has columns {sorted(fields)}")
    if len(names) > 1:
        wrong = [n for n in names if not isinstance(fields[n], NumericType)]
        if wrong:
            raise ValueError(f"feature columns {wrong}: expected numeric columns, received "
                             f"{[fields[n].simpleString() for n in wrong]}")
        return F.array(*[F.col(n).cast("float") for n in names])
    name, dtype = names[0], fields[names[0]]
    if isinstance(dtype, VectorUDT):
        return vector_to_array(F.col(name), "float32")
    if isinstance(dtype, ArrayType) and isinstance(dtype.elementType, NumericType):
        return F.col(name).cast("array<float>")
    if isinstance(dtype, NumericType):
        return F.array(F.col(name).cast("float"))
    raise ValueError(f"features column {name!r}: expected a Spark ML vector, an array of numbers or numeric "
                     f"columns, received {dtype.simpleString()}")


def _convert_partition(batches, run_dir, width, policy, has_label):
    """Arrow batches of one partition -> checked float32 arrays written to run_dir."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyspark import TaskContext

    p = TaskContext.get().partitionId()
    xs, ys = [], []
    bad = dict(null_features=0, wrong_length=0, non_finite=0, null_label=0)
    for batch in batches:
        feats = batch.column("features")
        n = len(feats)
        if n == 0:
            continue
        lengths = np.asarray(pc.list_value_length(feats).fill_null(-1), dtype=np.int64)
        null_rows = np.asarray(feats.is_null(), dtype=bool)
        # Null elements inside an array become NaN and are counted as non-finite.
        values = np.asarray(feats.flatten().fill_null(np.nan), dtype=np.float32)
        keep = (lengths == width) & ~null_rows
        bad["null_features"] += int(null_rows.sum())
        bad["wrong_length"] += int(((lengths != width) & ~null_rows).sum())
        x = np.zeros((n, width), dtype=np.float32)
        rows_ok = np.flatnonzero(keep)
        if rows_ok.size:
            offsets = np.asarray(feats.offsets, dtype=np.int64)[:-1] - int(feats.offsets[0].as_py())
            take = (offsets[rows_ok][:, None] + np.arange(width)[None, :])
            x[rows_ok] = values[take]
        finite = np.isfinite(x).all(axis=1)
        bad["non_finite"] += int((keep & ~finite).sum())
        keep &= finite
        if has_label:
            label = batch.column("label")
            label_null = np.asarray(label.is_null(), dtype=bool)
            bad["null_label"] += int((keep & label_null).sum())
            keep &= ~label_null
            y = np.asarray(label.fill_null(0), dtype=np.float64)
            bad["non_finite"] += int((keep & ~np.isfinite(y)).sum())
            keep &= np.isfinite(y)
            ys.append(y[keep])
        xs.append(x[keep])
    x = np.concatenate(xs) if xs else np.zeros((0, width), np.float32)
    y = np.concatenate(ys) if ys else np.zeros(0, np.float64)
    if policy == "skip" or not any(bad.values()):
        atomic_write_bytes(os.path.join(run_dir, f"part-{p:05d}-x.npy"), lambda f: np.save(f, x))
        atomic_write_bytes(os.path.join(run_dir, f"part-{p:05d}-y.npy"), lambda f: np.save(f, y))
    label_min = float(y.min()) if y.size else np.nan
    label_max = float(y.max()) if y.size else np.nan
    yield pa.RecordBatch.from_pylist([dict(partition=p, rows=len(x), label_min=label_min,
                                           label_max=label_max, **bad)])


def materialize_dataframe(df, features_col="features", label_col="label", feature_shape=None,
                          num_partitions=None, cache_root=None, policy="error"):
    """Convert a DataFrame's features and labels into per-partition numpy files.

    Args:
        df: the DataFrame.
        features_col: a vector column, an array column, or a list of numeric columns.
        label_col: numeric label column, or None (inference/validation without labels).
        feature_shape: per-sample shape the flat features are reshaped to (e.g. (28, 28, 1)).
        num_partitions: P; the DataFrame is repartitioned only if it has another count.
        cache_root: folder for the files (default: the system temp folder).
        policy: "error" (any bad row fails before training) or "skip" (dropped and counted).

    Returns:
        PartitionedData.
    """
    from pyspark.sql import functions as F

    if policy not in POLICIES:
        raise ValueError(f"policy: expected one of {POLICIES}, received {policy!r}")
    if label_col is not None and label_col not in df.columns:
        raise ValueError(f"label column {label_col!r} not found; the DataFrame has columns {sorted(df.columns)}")
    features = _feature_array_column(df, features_col)
    cols = [features.alias("features")]
    if label_col is not None:
        cols.append(F.col(label_col).cast("double").alias("label"))
    data = df.select(*cols)
    width = _feature_width(data, features_col)
    if feature_shape is not None and int(np.prod(feature_shape)) != width:
        raise ValueError(f"feature_shape {tuple(feature_shape)} holds {int(np.prod(feature_shape))} values, but "
                         f"features column {features_col!r} has {width} values per row")
    P = num_partitions or df.sparkSession.sparkContext.defaultParallelism
    if data.rdd.getNumPartitions() != P:
        data = data.repartition(P)
    run_dir = os.path.join(cache_root or default_cache_root(), f"run-{uuid.uuid4().hex}")
    os.makedirs(run_dir, exist_ok=True)
    has_label = label_col is not None
    schema = ("partition long, rows long, label_min double, label_max double, null_features long, "
              "wrong_length long, non_finite long, null_label long")
    rows = data.mapInArrow(lambda it: _convert_partition(it, run_dir, width, policy, has_label),
                           schema).collect()
    rows = sorted(rows, key=lambda r: r.partition)
    bad = {k: sum(r[k] for r in rows) for k in ("null_features", "wrong_length", "non_finite", "null_label")}
    if policy == "error" and any(bad.values()):
        described = ", ".join(f"{v} with {k.replace('_', ' ')}" for k, v in bad.items() if v)
        raise ValueError(f"features column {features_col!r} / label column {label_col!r}: {sum(bad.values())} bad "
                         f"row(s) ({described}; expected {width} finite values per row and a label); "
                         f"fix the data or use policy='skip' to drop them")
    sizes = [int(r.rows) for r in rows]
    mins = [r.label_min for r in rows if r.rows]
    label_range = (min(mins), max(r.label_max for r in rows if r.rows)) if has_label and mins else None
    shape = tuple(feature_shape) if feature_shape is not None else (width,)
    return PartitionedData(run_dir, sizes, bad, shape, label_range)


def _feature_width(data, features_col):
    """Values per row, from the first non-null row (cheap: one row is read)."""
    from pyspark.sql import functions as F

    first = data.select(F.size("features").alias("n")).where("features is not null").limit(1).collect()
    if not first:
        raise ValueError(f"features column {features_col!r}: no non-null rows")
    return int(first[0].n)


def load_partition(run_dir, partition, feature_shape):
    """(x, y) of one converted partition, memory-mapped once per Python worker."""
    key = (run_dir, partition)
    if key not in _LOADED:
        base = os.path.join(run_dir, f"part-{partition:05d}")
        try:
            x = np.load(base + "-x.npy", mmap_mode="r", allow_pickle=False)
            y = np.load(base + "-y.npy", mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{base}-x.npy: converted training partition {partition} is not on this machine; "
                f"set cache_root to a folder every executor can read") from None
        _LOADED[key] = (x.reshape((len(x),) + tuple(feature_shape)), y)
    return _LOADED[key]
