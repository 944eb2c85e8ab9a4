"""Embeddings DataFrame -> L2-normalised float32 blocks on the executors.

Each partition of the repartitioned catalogue becomes one block: its ids (numpy,
int64 or str) and its unit-length vectors (rows, dim), built from Arrow batches
without Python row objects. Rows that cannot be compared by cosine (null or
wrong-length features, NaN/Inf, all zeros) are counted per cause; the caller
refuses the catalogue if any were found.
"""
import math

import numpy as np

from bigdl_py.data.partitions import arrow_feature_matrix

BAD_CAUSES = ("null_features", "wrong_length", "non_finite", "zero_norm", "null_id")
ID_COLUMNS = ("id", "path", "item")  # tried in this order when id_col is not given


def block_rows_for_budget(memory_mb, dim):
    """Rows per block so that one task's score matrix and two blocks fit in memory_mb.

    A task holds a (b, b) float32 score matrix plus a query and a catalogue block
    of (b, dim) float32: 4 b^2 + 8 b dim bytes.
    """
    budget = memory_mb * 2 ** 20
    b = (-8 * dim + math.sqrt(64 * dim * dim + 16 * budget)) / 8
    return max(64, int(b) // 64 * 64)


def resolve_id_col(df, id_col):
    """The id column: `id_col`, or the first of id/path/item the DataFrame has."""
    if id_col is not None:
        if id_col not in df.columns:
            raise ValueError(f"id column {id_col!r} not found; the embeddings have columns {sorted(df.columns)}")
        return id_col
    for name in ID_COLUMNS:
        if name in df.columns:
            return name
    raise ValueError(f"no id column: expected one of {list(ID_COLUMNS)} or id_col=..., the embeddings have "
                     f"columns {sorted(df.columns)}")


def unit_vectors_from_arrow(batch, features_col, dim):
    """(unit-length float32 matrix, per-row ok mask, bad counts) of an Arrow batch's features."""
    x, causes = arrow_feature_matrix(batch, features_col, dim)
    keep = ~(causes["null_features"] | causes["wrong_length"] | causes["non_finite"])
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    zero = keep & (norms == 0)
    keep &= ~zero
    x[keep] /= norms[keep, None].astype(np.float32)
    bad = {cause: int(mask.sum()) for cause, mask in causes.items()}
    bad["zero_norm"] = int(zero.sum())
    return x, keep, bad


def read_embeddings(spark, embeddings):
    """A DataFrame as is, or the Parquet at a path."""
    return spark.read.parquet(embeddings) if isinstance(embeddings, str) else embeddings


def unit_column(name):
    """Spark Column: the array column `name` scaled to unit length (array<float>)."""
    from pyspark.sql import functions as F

    feats = F.col(name).cast("array<double>")
    norm = F.sqrt(F.aggregate(feats, F.lit(0.0), lambda acc, v: acc + v * v))
    return F.transform(feats, lambda v: (v / norm).cast("float"))


def l2_normalize(x):
    """Rows scaled to unit length (float32); all-zero rows raise ValueError."""
    x = np.asarray(x, np.float32)
    norms = np.linalg.norm(x.astype(np.float64), axis=-1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"l2_normalize: {int((norms == 0).sum())} all-zero row(s) of {len(x)}; "
                         f"they have no direction")
    return (x / norms).astype(np.float32)


def partition_to_block(batches, dim):
    """Arrow batches (columns id, features) of one partition -> one block row."""
    import pyarrow as pa
    from pyspark import TaskContext

    block = TaskContext.get().partitionId()
    ids, xs = [], []
    bad = dict.fromkeys(BAD_CAUSES, 0)
    for batch in batches:
        if batch.num_rows == 0:
            continue
        x, keep, counts = unit_vectors_from_arrow(batch, "features", dim)
        id_null = np.asarray(batch.column("id").is_null(), dtype=bool)
        counts["null_id"] = int(id_null.sum())
        keep &= ~id_null
        for cause, v in counts.items():
            bad[cause] += v
        ids.append(batch.column("id").filter(pa.array(keep)))
        xs.append(x[keep])
    if not xs:
        return
    vectors = np.concatenate(xs)
    yield pa.RecordBatch.from_pylist([dict(block=block, rows=len(vectors), ids=pa.concat_arrays(ids).to_pylist(),
                                           vectors=vectors.tobytes(), **bad)])


def block_from_row(row, dim):
    """(block, ids ndarray, vectors (rows, dim) float32, {cause: count}) from a block row."""
    ids = np.asarray(row.ids)
    vectors = np.frombuffer(row.vectors, np.float32).reshape(row.rows, dim)
    return row.block, ids, vectors, {c: row[c] for c in BAD_CAUSES}
