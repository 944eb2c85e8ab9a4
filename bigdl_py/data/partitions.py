"""Training data on executors: DataFrame -> Arrow -> numpy, converted once per partition.

`materialize_dataframe` runs one Spark job. Its first stage converts every partition
through Arrow (`mapInArrow`, no Python row objects) into float32 feature chunks and
labels, checking them (nulls, wrong length, NaN/Inf); the chunks are keyed by their
partition p and shuffled, once, into partition p of an RDD partitioned by key (so it
co-partitions with the all-reduce's shuffles). Its second stage, pinned to task slots
spread over the executors (data/placement.py), writes each partition's arrays as `.npy`
files into a cache folder on the executor that runs it and keeps a tiny persisted "token"
per partition. Training tasks union the tokens into their
own partition: Spark then schedules partition p where its token (and so its files) lives,
and when an executor is lost its tokens are recomputed from the shuffle (or from the
DataFrame's lineage) inside the task that needs them, which rewrites the files on that
executor. Nothing is read by a path another host wrote; the files are only a cache,
mapped (`np.load(mmap_mode="r")`) instead of deserialised again every iteration.
Bad rows are counted per column and cause, and either fail the run (policy "error",
the default) or are dropped and reported (policy "skip").
"""
import os
import tempfile
import uuid
from collections import namedtuple

import numpy as np

from bigdl_py.atomic import atomic_write_bytes
from bigdl_py.data.placement import by_key, outvoted_union, spread_slots

POLICIES = ("error", "skip")
# Features per shuffled record: small records keep the JVM's copies of them (Arrow, rows, pickles) small.
CHUNK_BYTES = 4 << 20
_LOADED = {}  # (folder, partition) -> (x, y), per Python worker


class DataLocation(namedtuple("DataLocation", "cache_root run_id")):
    """Where a run's converted partitions are cached: `cache_root` (None: the temp folder of
    whichever process asks) / `run_id`. Resolved on each executor, never a driver's path."""

    def folder(self):
        return os.path.join(self.cache_root or default_cache_root(), self.run_id)


class PartitionedData:
    """What the conversion found and the RDDs that bring each partition to the task that trains on it.

    Attributes:
        location: the DataLocation of the executor-side cache files.
        sizes: rows per partition (after dropped bad rows).
        tokens: persisted RDD with `key_partitions` partitions under `by_key`; partition p
            (p < P) holds one record (p, ("data", stats)) whose computation wrote p's files.
        keyed: the shuffled chunks the tokens are made from, (p, ("chunk", run_id, i, x, y))
            records and one (p, ("stats", run_id, {...})) in partition p: the ring's ranks read it.
    """

    def __init__(self, location, sizes, bad, feature_shape, label_range, tokens=None, keyed=None,
                 fractional_labels=0):
        self.location = location
        self.sizes = sizes
        self.bad = bad  # {cause: count}
        self.feature_shape = feature_shape
        self.label_range = label_range  # (min, max) over kept rows, or None
        self.fractional_labels = fractional_labels  # kept rows whose label is not a whole number
        self.tokens = tokens
        self.keyed = keyed

    @property
    def num_partitions(self):
        return len(self.sizes)

    @property
    def key_partitions(self):
        return self.tokens.getNumPartitions()


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


BAD_FEATURE_CAUSES = ("null_features", "wrong_length", "non_finite")
BAD_CAUSES = BAD_FEATURE_CAUSES + ("null_label",)


def _list_to_matrix(arr, width):
    """An Arrow list array -> (n, width) float32 and the per-row (null, wrong length) masks."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_fixed_size_list(arr.type):
        arr = arr.cast(pa.list_(pa.float32()))
    n = len(arr)
    lengths = np.asarray(pc.list_value_length(arr).fill_null(-1), dtype=np.int64)
    null_rows = np.asarray(arr.is_null(), dtype=bool)
    x = np.zeros((n, width), dtype=np.float32)
    rows_ok = np.flatnonzero((lengths == width) & ~null_rows)
    if rows_ok.size:
        # Null elements inside an array become NaN and are counted as non-finite.
        values = np.asarray(arr.flatten().fill_null(np.nan), dtype=np.float32)
        if rows_ok.size == n and values.size == n * width:
            # All rows whole: no gather. Arrow's buffer is read-only; bad values are zeroed later.
            x = values if values.flags.writeable else values.copy()
            return x.reshape(n, width), null_rows, lengths != width
        offsets = np.asarray(arr.offsets, dtype=np.int64)[:-1] - int(arr.offsets[0].as_py())
        x[rows_ok] = values[offsets[rows_ok][:, None] + np.arange(width)[None, :]]
    return x, null_rows, (lengths != width) & ~null_rows


def _vector_to_matrix(arr, width):
    """A Spark ML vector column (Arrow struct type/size/indices/values) -> (n, width) float32 + masks."""
    null_rows = np.asarray(arr.is_null(), dtype=bool)
    # flatten() (unlike field()) respects the offset of a sliced batch.
    child = dict(zip((f.name for f in arr.type), arr.flatten()))
    kind = np.asarray(child["type"].fill_null(1), dtype=np.int64)
    x, _, wrong = _list_to_matrix(child["values"], width)
    sparse = (kind == 0) & ~null_rows
    if sparse.any():
        size = np.asarray(child["size"].fill_null(-1), dtype=np.int64)
        indices, values = child["indices"], child["values"]
        rows = np.flatnonzero(sparse)
        sub_i, sub_v = indices.take(rows), values.take(rows)
        counts = np.asarray(sub_i.value_lengths().fill_null(0), dtype=np.int64)
        idx = np.asarray(sub_i.flatten(), dtype=np.int64)
        val = np.asarray(sub_v.flatten().fill_null(np.nan), dtype=np.float32)
        row_of = np.repeat(rows, counts)
        bad_index = (idx < 0) | (idx >= width)
        x[rows] = 0.0
        ok = ~bad_index
        x[row_of[ok], idx[ok]] = val[ok]
        wrong = wrong.copy()
        wrong[rows] = size[rows] != width
        wrong[np.unique(row_of[bad_index])] = True
    wrong &= ~null_rows
    return x, null_rows, wrong


def _columns_to_matrix(arrays):
    """Numeric Arrow arrays, one per feature -> (n, k) float32; a null in any of them makes the row null."""
    n = len(arrays[0])
    x = np.empty((n, len(arrays)), dtype=np.float32)
    null_rows = np.zeros(n, dtype=bool)
    for j, a in enumerate(arrays):
        null_rows |= np.asarray(a.is_null(), dtype=bool)
        x[:, j] = np.asarray(a.cast("double").fill_null(0.0), dtype=np.float64)
    return x, null_rows, np.zeros(n, dtype=bool)


def _kind_of(arrow_type):
    """'list', 'vector', 'number' or None for an Arrow type we cannot read as features."""
    import pyarrow as pa

    if (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)
            or pa.types.is_fixed_size_list(arrow_type)):
        inner = arrow_type.value_type
        return "list" if pa.types.is_integer(inner) or pa.types.is_floating(inner) else None
    if pa.types.is_struct(arrow_type) and {f.name for f in arrow_type} == {"type", "size", "indices", "values"}:
        return "vector"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "number"
    return None


def arrow_feature_matrix(batch, features_col, width):
    """Features of an Arrow RecordBatch as an (n, width) float32 matrix and per-cause bad-row masks.

    `features_col` is an array column (list of numbers), a Spark ML vector column
    (dense or sparse) or a list of numeric columns. Bad rows are zero in the matrix
    and flagged in the masks {"null_features", "wrong_length", "non_finite"}.
    """
    names = [features_col] if isinstance(features_col, str) else list(features_col)
    for name in names:
        if batch.schema.get_field_index(name) < 0:
            raise ValueError(f"features column {name!r} not found; the data has columns {batch.schema.names}")
    kinds = {name: _kind_of(batch.schema.field(name).type) for name in names}
    wrong_type = {n: str(batch.schema.field(n).type) for n, k in kinds.items()
                  if k is None or (len(names) > 1 and k != "number")}
    if wrong_type:
        raise ValueError(f"features column(s) {sorted(wrong_type)}: expected a Spark ML vector, an array of "
                         f"numbers or numeric columns, found {wrong_type}")
    if len(names) > 1 or kinds[names[0]] == "number":
        if len(names) != width:
            raise ValueError(f"features columns {names}: expected {width} numeric columns, found {len(names)}")
        x, null_rows, wrong = _columns_to_matrix([batch.column(n) for n in names])
    elif kinds[names[0]] == "vector":
        x, null_rows, wrong = _vector_to_matrix(batch.column(names[0]), width)
    else:
        x, null_rows, wrong = _list_to_matrix(batch.column(names[0]), width)
    non_finite = ~np.isfinite(x).all(axis=1) & ~null_rows & ~wrong
    x[non_finite | wrong | null_rows] = 0.0
    return x, dict(null_features=null_rows, wrong_length=wrong, non_finite=non_finite)


def describe_bad_rows(column, counts, width):
    """'N bad row(s) (a with null features, ...; expected W finite values per row)' for error messages."""
    described = ", ".join(f"{v} with {k.replace('_', ' ')}" for k, v in counts.items() if v)
    return (f"{column}: {sum(counts.values())} bad row(s) ({described}; expected {width} finite values "
            f"per row)")


def new_location(cache_root):
    """A DataLocation for a new run's cache under `cache_root`."""
    return DataLocation(cache_root, f"run-{uuid.uuid4().hex}")


def convert_partition(batches, width, policy, has_label, run_id):
    """Arrow batches of one partition -> its checked float32 chunks, then its statistics.

    Yields (p, ("chunk", run_id, i, x, y)) per CHUNK_BYTES of features and last
    (p, ("stats", run_id, {...})), p being this task's partition. With policy "error" the chunks after the first bad row are left out
    (the run fails on the statistics anyway).
    """
    from pyspark import TaskContext

    p = TaskContext.get().partitionId()
    bad = dict.fromkeys(BAD_CAUSES, 0)
    rows, chunk, label_min, label_max, fractional = 0, 0, np.inf, -np.inf, 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        x, causes = arrow_feature_matrix(batch, "features", width)
        keep = np.ones(batch.num_rows, dtype=bool)
        for cause, mask in causes.items():
            bad[cause] += int(mask.sum())
            keep &= ~mask
        y = np.zeros(0, np.float64)
        if has_label:
            label = batch.column("label")
            label_null = np.asarray(label.is_null(), dtype=bool)
            bad["null_label"] += int((keep & label_null).sum())
            keep &= ~label_null
            y = np.asarray(label.fill_null(0), dtype=np.float64)
            bad["non_finite"] += int((keep & ~np.isfinite(y)).sum())
            keep &= np.isfinite(y)
            y = y[keep]
            fractional += int(np.count_nonzero(y != np.floor(y)))
            if y.size:
                label_min, label_max = min(label_min, float(y.min())), max(label_max, float(y.max()))
        rows += int(keep.sum())
        if policy == "skip" or not any(bad.values()):
            x = x[keep]
            step = max(1, CHUNK_BYTES // (4 * max(width, 1)))
            for lo in range(0, len(x), step):
                yield p, ("chunk", run_id, chunk, np.ascontiguousarray(x[lo:lo + step]), y[lo:lo + step])
                chunk += 1
    finite = rows and has_label
    yield p, ("stats", run_id, dict(partition=p, rows=rows, label_min=label_min if finite else np.nan,
                            label_max=label_max if finite else np.nan, fractional_labels=fractional, **bad))


def _write_partition(location, width):
    """The token stage: gather partition p's chunks, write its files into this executor's cache."""
    def write(p, records):
        records = (r for r in records if r[1][0] in ("chunk", "stats"))  # not the pins' records
        gathered = _gather(records, {location.run_id: (location, width)})
        for (_, q), (x, y, stats) in gathered.items():  # partition p of this run, or nothing past the last
            store_partition(location.folder(), q, x, y)
            yield q, ("data", stats)
    return write


def _gather(records, datasets):
    """{(run_id, p): (x, y, stats)} from a stream of chunk and stats records of the given runs.

    `datasets` maps run_id -> (DataLocation, width); chunks are put back in their order."""
    chunks, stats = {}, {}
    for p, record in records:
        key = (record[1], p)
        if record[0] == "chunk":
            chunks.setdefault(key, []).append(record[2:])
        else:
            stats[key] = record[2]
    gathered = {}
    for key in sorted(stats):
        width = datasets[key[0]][1]
        part = sorted(chunks.get(key, []), key=lambda c: c[0])
        x = np.concatenate([c[1] for c in part]) if part else np.zeros((0, width), np.float32)
        y = np.concatenate([c[2] for c in part]) if part else np.zeros(0, np.float64)
        gathered[key] = (x, y, stats[key])
    return gathered


def store_partition(folder, p, x, y):
    """Write partition p's arrays into `folder` (created if needed), atomically."""
    os.makedirs(folder, exist_ok=True)
    base = os.path.join(folder, f"part-{p:05d}")
    atomic_write_bytes(base + "-x.npy", lambda f: np.save(f, x))
    atomic_write_bytes(base + "-y.npy", lambda f: np.save(f, y))
    _LOADED.pop((folder, p), None)


def _arrow_chunks(data, width, policy, has_label, run_id):
    """The converted chunks of a DataFrame as an RDD of (p, record) pairs, through Arrow.

    mapInArrow yields Arrow rows; each carries one chunk's raw float32/float64 bytes (or the
    statistics) and is decoded back into arrays on the Python side of the shuffle.
    """
    import json

    import pyarrow as pa

    arrow_schema = pa.schema([("partition", pa.int64()), ("chunk", pa.int64()), ("rows", pa.int64()),
                              ("x", pa.binary()), ("y", pa.binary()), ("stats", pa.string())])

    def encode(batches):
        for p, record in convert_partition(batches, width, policy, has_label, run_id):
            if record[0] == "chunk":
                row = dict(partition=p, chunk=record[2], rows=len(record[3]), x=record[3].tobytes(),
                           y=record[4].tobytes(), stats=None)
            else:
                row = dict(partition=p, chunk=-1, rows=0, x=b"", y=b"", stats=json.dumps(record[2]))
            yield pa.RecordBatch.from_pylist([row], schema=arrow_schema)

    def decode(row):
        if row.stats is not None:
            return row.partition, ("stats", run_id, json.loads(row.stats))
        x = np.frombuffer(row.x, dtype=np.float32).reshape(row.rows, width)
        return row.partition, ("chunk", run_id, row.chunk, x, np.frombuffer(row.y, dtype=np.float64))

    schema = "partition long, chunk long, rows long, x binary, y binary, stats string"
    return data.mapInArrow(encode, schema).rdd.map(decode)


def materialize_keyed(chunks, key_partitions, location, width, feature_shape, policy, has_label, source,
                      policy_param="policy", pins=None):
    """Shuffle the (p, record) chunks into partition p, write each partition's cache files on the
    executor that gets it and keep its token; returns PartitionedData.

    The chunks' map outputs sit where the DataFrame's partitions were (a cached DataFrame may sit
    on a few executors), so the token stage is pinned to `spread_slots` instead: partition p's files
    and token, and so training partition p, land one per task slot across the executors. With
    `pins` (another dataset's tokens, of key_partitions partitions), partition p is written where
    that dataset's partition p is: validation beside training, so a ring rank, which runs where
    its training partitions are, finds its validation partitions there too.
    """
    keyed = chunks.partitionBy(key_partitions, by_key)
    if pins is None or pins.getNumPartitions() != key_partitions:
        pins = spread_slots(chunks.context, key_partitions)
    placed = outvoted_union(chunks.context, [keyed], pins)
    tokens = placed.mapPartitionsWithIndex(_write_partition(location, width), preservesPartitioning=True)
    # Serialised as partitionBy's output is: a union with the all-reduce's shuffles then needs no
    # re-serialising Python pass over the weights (pyspark re-serialises when the formats differ).
    tokens._jrdd_deserializer = keyed._jrdd_deserializer
    tokens.persist()
    rows = [stats for _, (_, stats) in tokens.collect()]
    return summarize_conversion(rows, location, width, feature_shape, policy, has_label, source,
                                tokens=tokens, keyed=keyed, policy_param=policy_param)


def grouped_by_rank(datasets, ranks, pins=None):
    """The keyed chunks of several PartitionedData (same P) as `ranks` partitions for a barrier stage.

    Partition r holds the records (r, (p, record)) of every data partition p with
    p * ranks // P == r, the datasets' records in the order given. With one rank per
    partition that is the datasets' own shuffles, unioned (narrow); otherwise one more
    shuffle, whose map side reads theirs. Nothing is converted again or passes the driver.

    The partitions are pinned to `pins` (an RDD of `ranks` partitions under by_key, such as
    the training data's tokens, so that rank r runs where partition r's files were written),
    or else to slots spread over the executors (data/placement.py). Left to the shuffles' own
    preferences, several ranks can prefer the host that converted most of the data; a barrier
    stage launches all its tasks in one round of offers, so it then waits out Spark's
    locality delay (spark.locality.wait, 3 s) before it starts.
    """
    P = datasets[0].num_partitions
    keyed = [d.keyed for d in datasets]
    sc = keyed[0].context
    union = keyed[0] if len(keyed) == 1 else sc.union(keyed)

    def with_rank(record):
        return record[0] * ranks // P, record

    if ranks == P == union.getNumPartitions():
        by_rank = union.map(with_rank, preservesPartitioning=True)  # rank r is partition r already
    else:
        by_rank = union.map(with_rank).partitionBy(ranks, by_key)
    if pins is None or pins.getNumPartitions() != ranks:
        pins = spread_slots(sc, ranks)
    return outvoted_union(sc, [by_rank], pins)


def is_cached(location, p):
    """Whether partition p's files are in this executor's cache folder."""
    base = os.path.join(location.folder(), f"part-{p:05d}")
    return os.path.exists(base + "-x.npy") and os.path.exists(base + "-y.npy")


def store_grouped(records, datasets, partitions):
    """Cache the partitions a grouped_by_rank task received on this executor.

    `datasets` are (DataLocation, width) of the runs the records belong to, `partitions` the
    data partitions this task holds. Partitions whose files are here already (written by the
    token stage on this executor or another one on this machine) are not read again: the
    records are read only until every missing partition is complete (each partition's
    statistics record comes after its chunks), and not at all when none is missing.
    """
    by_run = {location.run_id: (location, width) for location, width in datasets}
    missing = {(location.run_id, p) for location, _ in datasets for p in partitions
               if not is_cached(location, p)}

    def needed():
        if not missing:
            return
        for _, value in records:
            if isinstance(value[0], str):  # a pin's record (slot or token) carries no data
                continue
            p, record = value
            if (record[1], p) in missing:
                yield p, record
                if record[0] == "stats":
                    missing.discard((record[1], p))
                    if not missing:
                        return

    for (run_id, p), (x, y, _) in _gather(needed(), by_run).items():
        store_partition(by_run[run_id][0].folder(), p, x, y)


def materialize_dataframe(df, features_col="features", label_col="label", feature_shape=None,
                          num_partitions=None, cache_root=None, policy="error", key_partitions=None,
                          input_spec=None, policy_param="policy", pins=None):
    """Convert a DataFrame's features and labels into per-partition numpy arrays on the executors.

    Args:
        df: the DataFrame.
        features_col: a vector column, an array column, or a list of numeric columns.
        label_col: numeric label column, or None (inference/validation without labels).
        feature_shape: per-sample shape the flat features are reshaped to (e.g. (28, 28, 1)).
        num_partitions: P; the DataFrame is repartitioned only if it has another count.
        cache_root: each executor's folder for its cached files (default: its temp folder).
        policy: "error" (any bad row fails before training) or "skip" (dropped and counted).
        key_partitions: partitions of the token RDD (>= P; default P), to co-partition it
            with the all-reduce's shuffles.
        input_spec: the model's declared input (nn.input_spec), which the rows are checked
            against; see `feature_layout`.
        policy_param: the caller's name for `policy`, which the bad-row error tells the user to set.
        pins: place partition p where another dataset's token p is (see `materialize_keyed`).

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
    width, feature_shape = feature_layout(df, features_col, feature_shape, input_spec)
    P = num_partitions or df.sparkSession.sparkContext.defaultParallelism
    if data.rdd.getNumPartitions() != P:
        data = data.repartition(P)
    has_label = label_col is not None
    location = new_location(cache_root)
    return materialize_keyed(_arrow_chunks(data, width, policy, has_label, location.run_id),
                             max(key_partitions or P, P), location, width, feature_shape, policy, has_label,
                             f"features column {features_col!r} / label column {label_col!r}", policy_param, pins)


def summarize_conversion(rows, location, width, feature_shape, policy, has_label, source, tokens=None, keyed=None,
                         policy_param="policy"):
    """PartitionedData from the per-partition statistics `convert_partition` reported.

    Raises (policy "error") naming `source`, the bad-row counts by cause and `policy_param`."""
    rows = sorted(rows, key=lambda r: r["partition"])
    bad = {k: sum(r[k] for r in rows) for k in BAD_CAUSES}
    if policy == "error" and any(bad.values()):
        described = ", ".join(f"{v} with {k.replace('_', ' ')}" for k, v in bad.items() if v)
        raise ValueError(f"{source}: {sum(bad.values())} bad row(s) ({described}; expected {width} finite values "
                         f"per row and a label); fix the data or set {policy_param}='skip' to drop them")
    sizes = [int(r["rows"]) for r in rows]
    mins = [r["label_min"] for r in rows if r["rows"]]
    label_range = (min(mins), max(r["label_max"] for r in rows if r["rows"])) if has_label and mins else None
    shape = tuple(feature_shape) if feature_shape is not None else (width,)
    fractional = sum(int(r["fractional_labels"]) for r in rows) if has_label else 0
    return PartitionedData(location, sizes, bad, shape, label_range, tokens=tokens, keyed=keyed,
                           fractional_labels=fractional)


def feature_layout(df, features_col, feature_shape=None, input_spec=None):
    """(values per row, per-row shape) of the features of `df`, checked against the model.

    The width comes from the schema (`declared_width`), else `feature_shape`, else the
    model's `input_spec`, and only when none of them says from the first non-null row (one
    small Spark job). The shape is `feature_shape`, else the model's input shape when it
    fixes every axis, else flat. A schema, feature_shape and model that disagree fail here,
    before any Spark job, naming both shapes.
    """
    source = f"features column {features_col!r}"
    declared = declared_width(df, features_col)
    if feature_shape is not None:
        shape = tuple(int(s) for s in feature_shape)
        if declared is not None and int(np.prod(shape)) != declared:
            raise ValueError(f"feature_shape {shape} holds {int(np.prod(shape))} values, but {source} has "
                             f"{declared} values per row")
    else:
        width = declared if declared is not None else input_spec and input_spec.flat_width()
        width = width if width is not None else _first_row_width(df, features_col)
        model_shape = input_spec and input_spec.shape
        fixed = model_shape and Ellipsis not in model_shape and None not in model_shape
        shape = tuple(model_shape) if fixed and int(np.prod(model_shape)) == width else (width,)
    if input_spec is not None and not input_spec.fits(shape):
        raise ValueError(f"{source} gives rows of shape {shape} ({int(np.prod(shape))} values), but the model "
                         f"takes {input_spec.describe()}; set featureShape/feature_shape or change the model")
    return int(np.prod(shape)), shape


def feature_width(df, features_col):
    """Values per row of the features of `df`: `declared_width`, otherwise read from the first
    non-null row (one small Spark job). Rows of another width are still caught row by row when
    the data is converted."""
    declared = declared_width(df, features_col)
    return declared if declared is not None else _first_row_width(df, features_col)


def declared_width(df, features_col):
    """Values per row where the schema says it (a list of numeric columns, one number, a Spark ML
    vector with ML attributes, e.g. VectorAssembler's output), else None."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import NumericType

    if not isinstance(features_col, str):
        return len(features_col)
    field = df.schema[features_col]
    if isinstance(field.dataType, NumericType):
        return 1
    attrs = field.metadata.get("ml_attr", {}) if isinstance(field.dataType, VectorUDT) else {}
    if "num_attrs" in attrs:
        return int(attrs["num_attrs"])
    if "attrs" in attrs:
        return sum(len(group) for group in attrs["attrs"].values())
    return None


def _first_row_width(df, features_col):
    from pyspark.sql import functions as F

    first = (df.select(F.size(_feature_array_column(df, features_col)).alias("n"))
             .where(F.col(features_col).isNotNull()).limit(1).collect())
    if not first:
        raise ValueError(f"features column {features_col!r}: no non-null rows")
    return int(first[0].n)


def load_partition(location, partition, feature_shape):
    """(x, y) of one converted partition from this executor's cache, memory-mapped once per Python worker.

    Called in a task whose input holds the partition's token, so the files are here: the token
    was computed on this executor, or read from the cache of one on the same machine.
    """
    folder = location.folder()
    key = (folder, partition)
    if key not in _LOADED:
        base = os.path.join(folder, f"part-{partition:05d}")
        try:
            x = np.load(base + "-x.npy", mmap_mode="r", allow_pickle=False)
            y = np.load(base + "-y.npy", mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{base}-x.npy: converted partition {partition} is not cached on this executor (its token was "
                f"read from another machine's block manager); Spark retries the task") from None
        _LOADED[key] = (x.reshape((len(x),) + tuple(feature_shape)), y)
    return _LOADED[key]
