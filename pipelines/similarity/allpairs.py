"""Exact all-pairs top-k by cosine similarity, computed on the executors.

The catalogue is cut into blocks of unit vectors (blocks.py) that stay on the
executors (persisted to their disks), and the blocks into a few groups. The
Cartesian product of the grouped RDD with itself gives one task per pair of
groups; it multiplies the blocks of one group with those of the other (one
float32 GEMM per pair of blocks) and folds the scores into a running top-k per
row. Cosine is symmetric, so each unordered pair of blocks is multiplied once:
the rows of the product update the first block's top-ks and its columns the
second's. The partial top-ks are merged per block by a reduceByKey, exploded to
(item, neighbour, score, rank) rows in the JVM and written as Parquet. Memory
per task is bounded by the block size (from `memory_mb`), never by the
catalogue size, and the driver sees only counts.
"""
import math
import time

import numpy as np

# Shared with the training data path: vector/array/numeric columns -> array<float>, and its width.
from bigdl_py.data.partitions import _feature_array_column, feature_width
from bigdl_py.pipelines.similarity._topk_kernel import empty_topk, merge_order, topk_update, topk_update_columns
from bigdl_py.pipelines.similarity.blocks import (BAD_CAUSES, block_from_row, block_rows_for_budget,
                                                  partition_to_block, read_embeddings,
                                                  resolve_id_col)

GROUP_BLOCKS = 32  # catalogue blocks per right-side partition: fewer partial top-ks to shuffle


def _mirrored_half(x, y, n):
    """Whether the ordered block pair (x, y) is the one of {x, y} that is computed.

    Every unordered pair of the n blocks reaches the tasks twice, as (x, y) and
    (y, x); one product serves both blocks' top-ks. Picking by the cyclic distance
    (not by x < y) gives every task about the same number of products.
    """
    d = (y - x) % n
    return d == 0 or 2 * d < n or (2 * d == n and x < y)


def _group_pair_topk(pairs, k, starts, order):
    """One task: the blocks of one group against those of another -> partial top-k per block touched."""
    states = {}

    def state(blk, ids):
        if blk not in states:
            states[blk] = (ids, *empty_topk(len(ids), k), {})
        return states[blk]

    for (qb, q_ids, q, _), (cb, c_ids, c, _) in pairs:
        if not _mirrored_half(order[qb], order[cb], len(order)):
            continue
        scores = q @ c.T
        _, best_s, best_i, id_of = state(qb, q_ids)
        # Self pairs are skipped by index: query row r is catalogue item starts[qb] + r.
        topk_update(scores, best_s, best_i, starts[cb], starts[qb])
        id_of[cb] = c_ids
        if cb != qb:  # the same scores, read by column, are cb's candidates from qb
            _, best_s, best_i, id_of = state(cb, c_ids)
            topk_update_columns(scores, best_s, best_i, starts[qb])
            id_of[qb] = q_ids
    for blk, (ids, best_s, best_i, id_of) in states.items():
        yield blk, (ids, best_s, best_i, _neighbour_ids(best_i, id_of, starts))


def _neighbour_ids(best_i, id_of, starts):
    """Catalogue indices -> ids (object array), from the blocks this task saw; empty slots stay None."""
    flat = best_i.ravel()
    out = np.full(flat.shape, None, dtype=object)
    for cb, ids in id_of.items():
        hit = (flat >= starts[cb]) & (flat < starts[cb] + len(ids))
        out[hit] = ids[flat[hit] - starts[cb]]
    return out.reshape(best_i.shape)


def _merge_partials(a, b):
    """Merge two groups' top-k of one query block, keeping each winner's id beside its score."""
    order = merge_order(a[1], a[2], b[1], b[2])
    s, i, names = (np.take_along_axis(np.concatenate([x, y], axis=1), order, axis=1)
                   for x, y in zip(a[1:], b[1:]))
    return a[0], s, i, names


def _result_rows(item):
    _, (q_ids, best_s, best_i, names) = item
    for r, qid in enumerate(q_ids.tolist()):
        ok = best_i[r] >= 0
        yield qid, names[r][ok].tolist(), best_s[r][ok].tolist()


def all_pairs_topk(spark, embeddings, k=10, output_path=None, id_col=None, features_col="features",
                   block_rows=None, memory_mb=256):
    """For every catalogue item, its k most cosine-similar other items (exact).

    Args:
        spark: the SparkSession.
        embeddings: a DataFrame or a Parquet path with an id column and an
            array<float> features column (normalised here, any scale is fine).
        k: neighbours per item.
        output_path: write the result as Parquet here (replaced if it exists);
            None keeps it persisted on the executors' disks.
        id_col: the id column (default: the first of id, path, item).
        block_rows: rows per block; default from memory_mb.
        memory_mb: memory one task may use for its score matrix and two blocks.

    Returns:
        (DataFrame(item, neighbour, score float, rank int 1..k), summary dict with
        items, dim, blocks, block_rows, groups, seconds, items_per_s).

    Raises:
        ValueError naming the column when ids are missing or repeated, or rows have
        null, wrong-length, non-finite or all-zero features (with the counts).
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive integer, received {k!r}")
    started = time.perf_counter()
    df = read_embeddings(spark, embeddings)
    id_col = resolve_id_col(df, id_col)
    id_type = df.schema[id_col].dataType
    data = df.select(F.col(id_col).alias("id"), _feature_array_column(df, features_col).alias("features"))
    dim = feature_width(df, features_col)
    n_rows = data.count()
    b = block_rows or block_rows_for_budget(memory_mb, dim)
    # At least one block per core, so that small catalogues still use every core.
    n_blocks = max(1, math.ceil(n_rows / b), min(spark.sparkContext.defaultParallelism, n_rows // 64))

    schema = (f"block long, rows long, ids array<{id_type.simpleString()}>, vectors binary, "
              + ", ".join(f"{c} long" for c in BAD_CAUSES))
    blocks = (data.repartition(n_blocks).mapInArrow(lambda it: partition_to_block(it, dim), schema)
              .rdd.map(lambda row: block_from_row(row, dim)).persist(StorageLevel.DISK_ONLY))
    try:
        stats = blocks.map(lambda blk: (blk[0], len(blk[1]), blk[3])).collect()
        bad = {c: sum(s[2][c] for s in stats) for c in BAD_CAUSES}
        if any(bad.values()):
            described = ", ".join(f"{v} with {c.replace('_', ' ')}" for c, v in bad.items() if v)
            raise ValueError(f"embeddings (id column {id_col!r}, features column {features_col!r}): "
                             f"{sum(bad.values())} bad row(s) of {n_rows} ({described}); expected an id and "
                             f"{dim} finite values, not all zero, per row")
        n_distinct = data.select("id").distinct().count()
        if n_distinct != n_rows:
            raise ValueError(f"id column {id_col!r}: expected unique ids, found {n_rows - n_distinct} repeated "
                             f"row(s) among {n_rows}")
        sizes = dict((blk, rows) for blk, rows, _ in stats)
        starts, offset = {}, 0
        for blk in sorted(sizes):
            starts[blk] = offset
            offset += sizes[blk]
        order = {blk: i for i, blk in enumerate(sorted(sizes))}
        # groups^2 tasks: at least about 4 per core, so that the cores finish together.
        cores = spark.sparkContext.defaultParallelism
        groups = min(len(sizes), max(math.ceil(len(sizes) / GROUP_BLOCKS), math.ceil(2 * math.sqrt(cores))))
        grouped = blocks.coalesce(groups)
        partials = grouped.cartesian(grouped).mapPartitions(lambda pairs: _group_pair_topk(pairs, k, starts, order))
        merged = partials.reduceByKey(_merge_partials, numPartitions=max(1, len(sizes)))
        rows = spark.createDataFrame(merged.flatMap(_result_rows),
                                     f"item {id_type.simpleString()}, neighbours array<{id_type.simpleString()}>, "
                                     f"scores array<float>")
        result = rows.select("item", F.posexplode(F.arrays_zip("neighbours", "scores")).alias("pos", "nb")).select(
            "item", F.col("nb.neighbours").alias("neighbour"), F.col("nb.scores").alias("score"),
            (F.col("pos") + 1).cast("int").alias("rank"))
        if output_path is not None:
            result.write.mode("overwrite").parquet(output_path)
            result = spark.read.parquet(output_path)
        else:
            result = result.persist(StorageLevel.DISK_ONLY)
            result.count()
    finally:
        blocks.unpersist()
    seconds = time.perf_counter() - started
    summary = dict(items=n_rows, dim=dim, k=k, blocks=len(sizes), block_rows=b, groups=groups,
                   seconds=round(seconds, 2), items_per_s=round(n_rows / seconds, 1))
    return result, summary
