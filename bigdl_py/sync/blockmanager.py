"""BigDL-style all-reduce of one flat parameter vector through Spark's block manager.

The flat vector of n values is cut into N slices. Slice s lives in partition s of a
cached RDD `W` (weights and optimizer state of that slice, co-partitioned by slice
id), so the optimizer state never leaves the executor that owns it. One training
iteration is one Spark job of three stages:

  1. all-gather: every cached weight slice is sent to every training partition
     (a shuffle keyed by training partition);
  2. compute: each training partition assembles the weights, runs forward/backward
     on its share of the batch and emits its gradient cut into N slices (a shuffle
     keyed by slice id);
  3. reduce + update: the task for slice s sums the N gradient pieces for s in a
     fixed partition order, reads its cached weights/state through a co-partitioned
     union (narrow: no shuffle of the state) and runs the optimizer on the slice,
     producing the next cached `W`.

The driver only schedules and receives a few numbers per iteration. Spark's lineage
recomputes whatever a lost executor held; the lineage is cut by writing the slices
to a checkpoint and rebuilding `W` from those files.
"""
import numpy as np
from pyspark.accumulators import AccumulatorParam


def slice_id(key):
    """Identity partitioner: key k goes to partition k (one function object, so
    co-partitioned RDDs compare equal and their union stays narrow)."""
    return key


def slice_bounds(n, num_slices, boundaries):
    """Cut [0, n) into at most num_slices ranges, snapped to parameter boundaries.

    Snapping keeps every layer inside one slice, so per-layer optimizers (LARS)
    compute exactly what they compute on the whole vector.
    """
    boundaries = np.unique(np.asarray(list(boundaries) + [0, n], dtype=np.int64))
    cuts = [0]
    for k in range(1, num_slices):
        target = k * n / num_slices
        snapped = int(boundaries[np.argmin(np.abs(boundaries - target))])
        if snapped > cuts[-1] and snapped < n:
            cuts.append(snapped)
    cuts.append(n)
    return [(cuts[i], cuts[i + 1]) for i in range(len(cuts) - 1)]


def to_bf16(a):
    """float32 -> bfloat16 bits with round-to-nearest-even (BigDL truncates)."""
    bits = a.view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    return ((bits + rounding) >> 16).astype(np.uint16)


def from_bf16(h):
    return (h.astype(np.uint32) << 16).view(np.float32)


class _SliceResults(AccumulatorParam):
    """Accumulates {slice id: result}; a retried task overwrites its own entry."""

    def zero(self, value):
        return {}

    def addInPlace(self, a, b):
        a.update(b)
        return a


class BlockManagerAllReduce:
    """Owns the cached weight/state RDD and builds the per-iteration stages.

    Args:
        sc: the SparkContext.
        bounds: [(start, stop)] of each slice.
        num_partitions: P, the number of training partitions.
    """

    def __init__(self, sc, bounds, num_partitions):
        self.sc = sc
        self.bounds = bounds
        self.num_slices = len(bounds)
        self.num_partitions = num_partitions
        self.W = None

    def set_slices(self, make_slice):
        """Build W from make_slice(s, start, stop) -> (weights, state), run on executors."""
        bounds, N = self.bounds, self.num_slices
        rdd = (self.sc.parallelize([(s, s) for s in range(N)], N)
               .partitionBy(N, slice_id)
               .mapPartitions(lambda it: [(s, make_slice(s, *bounds[s]) + (None,)) for s, _ in it],
                              preservesPartitioning=True))
        self._replace(rdd.persist())
        rdd.count()

    def all_gather(self):
        """RDD with P partitions; partition p holds [(s, weights of slice s)] for every s."""
        P = self.num_partitions
        return (self.W.flatMap(lambda kv: [(p, (kv[0], kv[1][0])) for p in range(P)])
                .partitionBy(P, slice_id))

    def reduce_scatter_update(self, grad_pieces, update):
        """Sum gradient pieces per slice and apply `update` on each slice's executor.

        grad_pieces: RDD of (s, (p, gradient piece, stats)) from the compute stage.
        update(s, weights, state, gradient_sum, stats_list) -> (weights, state, result).
        Runs the job; returns the per-slice results, ordered by slice.
        """
        N = self.num_slices
        shuffled = grad_pieces.partitionBy(N, slice_id)
        # Both sides hold pickled batches that read alike; with equal deserializers
        # PySpark's union skips its extra re-serialising Python pass over the gradients.
        shuffled._jrdd_deserializer = self.W._jrdd_deserializer
        reduced = shuffled.union(self.W)
        if reduced.getNumPartitions() != N:
            raise RuntimeError("gradient pieces and weight slices are not co-partitioned; the union would shuffle")
        results = self.sc.accumulator({}, _SliceResults())

        def run(it):
            pieces, current = [], None
            for s, value in it:
                if len(value) == 3 and isinstance(value[0], (int, np.integer)):
                    pieces.append(value)
                else:
                    current = (s, value)
            s, (weights, state, _) = current
            pieces.sort(key=lambda v: v[0])  # fixed order: same sum on every rerun
            total = None
            for _, piece, _ in pieces:
                g = from_bf16(piece) if piece.dtype == np.uint16 else piece
                total = g.astype(np.float32, copy=True) if total is None else total + g
            weights, state, result = update(s, weights, state, total, [st for _, _, st in pieces])
            results.add({s: result})
            yield s, (weights, state, None)

        new_W = reduced.mapPartitions(run, preservesPartitioning=True).persist()
        # A JVM-side count computes and caches the slices without another Python
        # pass over them; the small per-slice results come back in the accumulator.
        new_W._jrdd.count()
        self._replace(new_W)
        return [results.value[s] for s in range(N)]

    def foreach_slice(self, fn):
        """Run fn(s, start, stop, weights, state) on each slice's executor (checkpoints)."""
        bounds = self.bounds
        self.W.foreach(lambda kv: fn(kv[0], *bounds[kv[0]], kv[1][0], kv[1][1]))

    def collect_weights(self):
        """The whole flat weight vector on the driver (once, at the end of training)."""
        parts = sorted(self.W.map(lambda kv: (kv[0], kv[1][0])).collect())
        return np.concatenate([w for _, w in parts])

    def _replace(self, rdd):
        old, self.W = self.W, rdd
        if old is not None:
            old.unpersist(blocking=False)
