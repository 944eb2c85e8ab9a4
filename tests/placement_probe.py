"""Run on the simulated hosts with spark-submit: which host caches each data partition, trains it and
updates each weight slice, and where the ring's barrier tasks run. Prints one JSON line.

The DataFrame's partitions are all cached on one executor, so every converted chunk is written there:
Spark's own locality would put all data, training and updates on that one host.
"""
import json
import os
import sys
import time

import numpy as np
from pyspark.sql import SparkSession

from bigdl_py.data.partitions import grouped_by_rank, materialize_dataframe
from bigdl_py.sync.blockmanager import BlockManagerAllReduce


def host():
    return os.environ.get("SPARK_LOCAL_IP")


def compute(p, weights):
    pieces = [np.ones_like(w) for _, w in sorted(weights)]
    return pieces, {"count": 1, "host": host()}


def update(s, weights, state, gradient_sum, count):
    return weights - gradient_sum, state, host()


def ring_rank(records):
    """A ring task: its rank and host, and every data record it received is a chunk of its partitions."""
    from pyspark import BarrierTaskContext

    rank = BarrierTaskContext.get().partitionId()
    assert all(value[0] == "slot" or value[0] == rank for _, value in records)
    return [(rank, host())]


def main(partitions, cache_root):
    spark = SparkSession.builder.appName("bigdl_py-placement-probe").getOrCreate()
    try:
        sc = spark.sparkContext
        rows = [(i, ([float(i), float(i % 7)], float(i % 2))) for i in range(3000)]
        # All partitions cached on the one executor that wrote their shuffle input: Spark reads them there.
        cached = sc.parallelize(rows, 1).partitionBy(partitions).values().cache()
        cached.count()
        df = spark.createDataFrame(cached, "features array<float>, label double")
        cached_on = sorted(set(cached.mapPartitions(lambda _: [host()]).collect()))
        data = materialize_dataframe(df, num_partitions=partitions, cache_root=cache_root)
        token_hosts = dict(data.tokens.mapPartitionsWithIndex(lambda p, _: [(p, host())]).collect())
        # A second dataset (validation) converted beside the first: its partition p where the first's p is.
        beside = materialize_dataframe(df, num_partitions=partitions, cache_root=cache_root, pins=data.tokens)
        beside_hosts = dict(beside.tokens.mapPartitionsWithIndex(lambda p, _: [(p, host())]).collect())
        sync = BlockManagerAllReduce(sc, [(0, 10), (10, 20), (20, 30)], partitions, tokens=data.tokens)
        sync.set_slices(lambda s, start, stop: (np.zeros(stop - start, np.float32), None))
        stats, _ = sync.step(compute, update)
        _, updated = sync.step(compute, update)  # runs the first step's pending update
        t = time.perf_counter()
        ring = grouped_by_rank([data], partitions).barrier().mapPartitions(ring_rank).collect()
        ring_s = time.perf_counter() - t
    finally:
        spark.stop()
    print(json.dumps(dict(cached_on=cached_on, tokens=[token_hosts[p] for p in range(partitions)],
                          validation_tokens=[beside_hosts[p] for p in range(partitions)],
                          compute=[s["host"] for s in stats], update=updated,
                          ring=[h for _, h in sorted(ring)], ring_s=ring_s)), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
