"""Synthetic clustered embeddings, generated on the executors (for the 1M-item scale benchmark).

Item i belongs to cluster i % clusters: its vector is the cluster's random unit
centre plus Gaussian noise, so every item has real near neighbours (its cluster)
and the LSH baseline has structure to find. Deterministic for a seed.
"""
import numpy as np


def _centres(clusters, dim, seed):
    c = np.random.default_rng(seed).standard_normal((clusters, dim)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _generate(batches, clusters, dim, noise, seed):
    import pyarrow as pa

    centres = _centres(clusters, dim, seed)
    for batch in batches:
        ids = batch.column("id").to_numpy()
        if len(ids) == 0:
            continue
        rng = np.random.default_rng([seed, int(ids[0])])
        cluster = ids % clusters
        x = centres[cluster] + rng.standard_normal((len(ids), dim), dtype=np.float32) * np.float32(noise / np.sqrt(dim))
        feats = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim).cast(pa.list_(pa.float32()))
        yield pa.RecordBatch.from_pydict(dict(id=pa.array(ids), cluster=pa.array(cluster), features=feats))


def synthetic_embeddings(spark, n, dim=128, path=None, clusters=None, noise=0.5, seed=0, partitions=None):
    """DataFrame(id long, cluster long, features array<float>) of n clustered items; written to `path` if given.

    Args:
        clusters: number of clusters (default n // 100: about 100 items each).
        noise: norm of the noise relative to the unit centre.
    """
    if n < 1 or dim < 1:
        raise ValueError(f"synthetic_embeddings: expected n >= 1 and dim >= 1, received n={n}, dim={dim}")
    clusters = clusters or max(1, n // 100)
    parts = partitions or max(spark.sparkContext.defaultParallelism, n // 50_000)
    df = spark.range(0, n, numPartitions=parts).mapInArrow(
        lambda it: _generate(it, clusters, dim, noise, seed), "id long, cluster long, features array<float>")
    if path is None:
        return df
    df.write.mode("overwrite").parquet(path)
    return spark.read.parquet(path)
