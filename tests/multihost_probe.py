"""Run on the simulated hosts with spark-submit: what each executor sees of /tmp and of the shared folder.

One barrier task per host (so each runs on its own executor) writes a marker into its /tmp and
one into the shared folder, waits for the others, then lists both. Prints one JSON line.
"""
import importlib.util
import json
import os
import sys
import tempfile

from pyspark import BarrierTaskContext
from pyspark.sql import SparkSession

MARKER = "bigdl_py-isolation-"


def probe(shared):
    def run(_):
        ctx = BarrierTaskContext.get()
        rank = ctx.partitionId()
        with open(os.path.join("/tmp", f"{MARKER}{rank}"), "w") as f:
            f.write("private")
        with open(os.path.join(shared, f"{MARKER}{rank}"), "w") as f:
            f.write("shared")
        ctx.barrier()
        yield dict(rank=rank, host=os.environ.get("SPARK_LOCAL_IP"), tempdir=tempfile.gettempdir(),
                   has_bigdl_py=importlib.util.find_spec("bigdl_py") is not None,
                   private=sorted(n for n in os.listdir("/tmp") if n.startswith(MARKER)),
                   shared=sorted(n for n in os.listdir(shared) if n.startswith(MARKER)))
    return run


def main(shared, hosts):
    spark = SparkSession.builder.appName("bigdl_py-isolation-probe").getOrCreate()
    try:
        rows = spark.sparkContext.parallelize(range(hosts), hosts).barrier().mapPartitions(probe(shared)).collect()
    finally:
        spark.stop()
    driver_sees = sorted(n for n in os.listdir("/tmp") if n.startswith(MARKER))
    print(json.dumps(dict(executors=rows, driver_private=driver_sees)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
