"""Baseline: Spark MLlib BucketedRandomProjectionLSH approximate neighbours, and recall against ours.

On unit vectors the Euclidean distance is a function of the cosine
(d^2 = 2 - 2 cos), so the k nearest by LSH distance are the k most similar by
cosine: the two results are directly comparable.
"""
import time

import numpy as np

from bigdl_py.pipelines.similarity.blocks import read_embeddings, resolve_id_col, unit_column


def auto_bucket_length(vecs, n_items, candidates, seed=0, sample_rows=2000):
    """Bucket length giving each item about `candidates` bucket-mates per hash table.

    A bucket of length b around a projection value holds about n b p(value) items;
    with projections roughly normal of std s (measured on a sample of the
    catalogue, on random unit directions) that is n b / (s sqrt(2 pi)) at the mode.
    """
    fraction = min(1.0, 2.0 * sample_rows / max(n_items, 1))
    sample = np.array([r.vec.toArray() for r in vecs.sample(fraction=fraction, seed=seed).limit(sample_rows).collect()])
    directions = np.random.default_rng(seed).standard_normal((sample.shape[1], 16))
    directions /= np.linalg.norm(directions, axis=0)
    spread = float((sample @ directions).std(axis=0).mean())
    return candidates * spread * np.sqrt(2 * np.pi) / n_items


def lsh_topk(spark, embeddings, k=10, id_col=None, features_col="features", bucket_length=None,
             num_hash_tables=4, candidates=50, threshold=2.0, seed=0, output_path=None):
    """Approximate top-k by cosine via BucketedRandomProjectionLSH.approxSimilarityJoin.

    Args:
        embeddings: DataFrame or Parquet path (id column, features array).
        k: neighbours per item.
        bucket_length, num_hash_tables, seed: the LSH model (one random projection
            per hash table; pairs sharing a bucket in any table are candidates).
            bucket_length=None picks one that gives each item about `candidates`
            bucket-mates per table (the candidate-pair budget bounds the join).
        threshold: largest Euclidean distance between unit vectors kept (2 keeps all).
        output_path: write (item, neighbour, score, rank) Parquet here (else persisted).

    Returns:
        (DataFrame(item, neighbour, score, rank), summary dict with seconds, items_per_s).
    """
    from pyspark import StorageLevel
    from pyspark.ml.feature import BucketedRandomProjectionLSH
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    started = time.perf_counter()
    df = read_embeddings(spark, embeddings)
    id_col = resolve_id_col(df, id_col)
    vecs = df.select(F.col(id_col).alias("id"), array_to_vector(unit_column(features_col)).alias("vec"))
    vecs = vecs.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n_items = vecs.count()
        if bucket_length is None:
            bucket_length = auto_bucket_length(vecs, n_items, candidates, seed)
        model = BucketedRandomProjectionLSH(inputCol="vec", outputCol="hashes", bucketLength=bucket_length,
                                            numHashTables=num_hash_tables, seed=seed).fit(vecs)
        pairs = model.approxSimilarityJoin(vecs, vecs, threshold, distCol="dist").select(
            F.col("datasetA.id").alias("item"), F.col("datasetB.id").alias("neighbour"), "dist")
        ranked = (pairs.where(F.col("item") != F.col("neighbour"))
                  .withColumn("rank", F.row_number().over(Window.partitionBy("item").orderBy("dist", "neighbour")))
                  .where(F.col("rank") <= k)
                  .select("item", "neighbour", (1 - F.col("dist") ** 2 / 2).cast("float").alias("score"),
                          F.col("rank").cast("int")))
        if output_path is not None:
            ranked.write.mode("overwrite").parquet(output_path)
            ranked = spark.read.parquet(output_path)
        else:
            ranked = ranked.persist(StorageLevel.DISK_ONLY)
        n_pairs = ranked.count()
    finally:
        vecs.unpersist()
    seconds = time.perf_counter() - started
    return ranked, dict(items=n_items, pairs=n_pairs, k=k, bucket_length=bucket_length,
                        num_hash_tables=num_hash_tables, threshold=threshold, seconds=round(seconds, 2),
                        items_per_s=round(n_items / seconds, 1))


def recall_at_k(approx, exact):
    """Fraction of the exact (item, neighbour) pairs the approximate result also found."""
    found = approx.select("item", "neighbour").join(exact.select("item", "neighbour"), ["item", "neighbour"])
    total = exact.count()
    return found.count() / total if total else 1.0
