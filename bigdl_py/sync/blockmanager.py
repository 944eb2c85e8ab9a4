"""BigDL-style all-reduce of one flat parameter vector through Spark's block manager.

The flat vector of n values is cut into N slices; P training partitions compute
gradients. Everything moves as shuffle blocks between executors, through two
shuffles per iteration, both with max(N, P) partitions under one partitioner:

  * all-gather `D`: the task that owns slice s sends its weights to every training
    partition p (record keyed by p), and its weights with its optimizer state to
    itself (keyed by s);
  * reduce-scatter `E`: training partition p reads its partition of `D`, assembles
    the weights, runs forward/backward on its share of the batch and emits its
    gradient cut into N pieces, piece s keyed by s.

The update task for slice s reads partition s of `E` (the N pieces, summed in a
fixed partition order) and partition s of `D` (its weights and state) through a
co-partitioned union, which is narrow: the state never leaves the executors and is
never shuffled to anyone else. It runs the optimizer on the slice and writes the
next `D` in the same Python pass. So an iteration is two stages with one Python
pass each (update + all-gather, compute + reduce-scatter), run as one job of map
stages only (`SparkContext.submitMapStage`, the entry point Spark's adaptive
query execution uses): no stage is spent on a result nobody reads. The update of
the last iteration runs inside whatever next reads the weights (validation, a
checkpoint, the end of training).

The driver only schedules and receives a few numbers per iteration. Spark's lineage
recomputes whatever a lost executor held; the lineage is cut by writing the slices
to a checkpoint and starting `D` again from those files.
"""
import numpy as np
from pyspark.accumulators import AccumulatorParam

# Identity partitioner: the data tokens are partitioned with the same function object, so the
# training tasks' union of weights and data is narrow.
from bigdl_py.data.placement import by_key as slice_id
from bigdl_py.data.placement import outvoted_union, submit_map_stage


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


class _ByKey(AccumulatorParam):
    """Accumulates {key: value}; a retried or recomputed task overwrites its own entry."""

    def zero(self, value):
        return {}

    def addInPlace(self, a, b):
        a.update(b)
        return a


def _slice_records(s, weights, state, num_partitions):
    """The all-gather records of slice s: its weights for every training partition, and
    its weights with its state for the task that updates slice s next."""
    for p in range(num_partitions):
        yield p, ("weights", s, weights)
    yield s, ("state", s, weights, state)


class BlockManagerAllReduce:
    """Owns the all-gather shuffle of the current weights and builds the per-iteration stages.

    Args:
        sc: the SparkContext.
        bounds: [(start, stop)] of each slice.
        num_partitions: P, the number of training partitions.
        tokens: the training data's token RDD (PartitionedData.tokens), unioned into each
            training task so that it runs where its partition is cached (None: no data).
        width: partitions of both shuffles (default max(slices, P)); the tokens' count.
    """

    def __init__(self, sc, bounds, num_partitions, tokens=None, width=None):
        self.sc = sc
        self.bounds = bounds
        self.num_slices = len(bounds)
        self.num_partitions = num_partitions
        self.tokens = tokens
        self.width = width or max(self.num_slices, num_partitions)
        if self.width < max(self.num_slices, num_partitions):
            raise ValueError(f"width: expected at least max(slices, partitions) = "
                             f"{max(self.num_slices, num_partitions)}, received {self.width}")
        self.D = None
        self._results = None  # per-slice results of the update that produces D (None: D is a start)
        self._next = None  # (compute, the D it reads, its pieces RDD, its accumulator), built ahead

    def set_slices(self, make_slice):
        """Start D from make_slice(s, start, stop) -> (weights, state), run on executors."""
        bounds, P = self.bounds, self.num_partitions
        source = self.sc.parallelize(range(self.num_slices), self.num_slices).flatMap(
            lambda s: _slice_records(s, *make_slice(s, *bounds[s]), P))
        self.D = source.partitionBy(self.width, slice_id)
        self._results, self._next = None, None

    def per_training_partition(self, fn, tokens=None):
        """RDD of fn(p, [(s, weights of slice s) for every s]) over the P training partitions.

        The task of partition p also reads p's data token (`tokens`, default the training
        data's): Spark places it where that partition's files are cached, or recomputes them there.
        """
        P = self.num_partitions
        tokens = tokens if tokens is not None else self.tokens
        # D prefers where its biggest map outputs were written; the tokens outvote it.
        source = self.D if tokens is None else outvoted_union(self.sc, [self.D], tokens)

        def run(p, records):
            if p >= P:  # D is wider than P when there are more slices than partitions
                return iter(())
            return fn(p, ((v[1], v[2]) for _, v in records if v[0] == "weights"))

        return source.mapPartitionsWithIndex(run)

    def step(self, compute, update, next_compute=None):
        """One iteration: gradients on the current weights, and their update (left pending).

        compute(p, weights) -> (pieces, stats) for training partition p, where weights
            yields (s, weights of slice s) for every s, pieces[s] is the gradient SUM of
            slice s (float32, or bf16 bits as uint16) and stats a small dict with the
            partition's sample "count".
        update(s, weights, state, gradient_sum, count) -> (weights, state, result)
            runs on slice s's executor once the pieces of every partition are summed.
        next_compute: the compute of the next step, when known: the driver builds its
            stages while this step's job runs.

        Runs one job: the pending update of the previous step (if it has not run
        yet), then compute. Returns ([stats of each training partition], [result of
        each slice] of the update that produced the weights used, or None at a start).
        """
        pieces, reports = self._pieces(compute)
        job = submit_map_stage(pieces)
        ran = self._results
        # While the job runs, the driver builds the stages that follow it.
        self._update(pieces, update)
        self._next = None if next_compute is None else (next_compute, self.D) + self._build_pieces(next_compute)
        job.get()
        return ([reports.value[p] for p in range(self.num_partitions)],
                None if ran is None else [ran.value[s] for s in range(self.num_slices)])

    def _pieces(self, compute):
        """(RDD of the gradient pieces of `compute` on D, its stats accumulator), built ahead if it was."""
        if self._next is not None and self._next[0] is compute and self._next[1] is self.D:
            return self._next[2:]
        return self._build_pieces(compute)

    def _build_pieces(self, compute):
        reports = self.sc.accumulator({}, _ByKey())

        def run_compute(p, weights):
            pieces, stats = compute(p, weights)
            reports.add({p: stats})
            for s, piece in enumerate(pieces):
                yield s, ("grad", p, piece, stats["count"])

        return self.per_training_partition(run_compute).partitionBy(self.width, slice_id), reports

    def _update(self, pieces, update):
        """D becomes the (lazy) all-gather of the slices after `update`."""
        P = self.num_partitions
        if self.tokens is None:
            reduced = pieces.union(self.D)
            if reduced.getNumPartitions() != self.width:
                raise RuntimeError("gradient pieces and weight slices are not co-partitioned; the union would shuffle")
        else:
            # Slice s is updated where data token s is: the updates spread over the executors like
            # the training tasks, instead of following D's map outputs onto one executor.
            reduced = outvoted_union(self.sc, [pieces, self.D], self.tokens)
        results = self.sc.accumulator({}, _ByKey())

        def run(records):
            grads, current = [], None
            for _, value in records:
                if value[0] == "grad":
                    grads.append(value[1:])
                elif value[0] == "state":
                    current = value[1:]
            if current is None:  # a partition past the last slice
                return
            s, weights, state = current
            grads.sort(key=lambda g: g[0])  # fixed order: same sum on every rerun
            total = None
            for _, piece, _ in grads:
                g = from_bf16(piece) if piece.dtype == np.uint16 else piece
                total = g.astype(np.float32, copy=True) if total is None else total + g
            weights, state, result = update(s, weights, state, total, sum(count for _, _, count in grads))
            results.add({s: result})
            yield from _slice_records(s, weights, state, P)

        self.D = reduced.mapPartitions(run).partitionBy(self.width, slice_id)
        self._results = results

    def update_results(self):
        """[result of each slice] of the update that produced the current weights, once a job ran it.

        None at a start (set_slices) or while that update is still pending.
        """
        if self._results is None or len(self._results.value) < self.num_slices:
            return None
        return [self._results.value[s] for s in range(self.num_slices)]

    def foreach_slice(self, fn):
        """Run fn(s, start, stop, weights, state) on each slice's executor (checkpoints)."""
        bounds = self.bounds

        def run(kv):
            if kv[1][0] == "state":
                _, s, weights, state = kv[1]
                fn(s, *bounds[s], weights, state)

        self.D.foreach(run)

    def collect_weights(self):
        """The whole flat weight vector on the driver (once, at the end of training)."""
        parts = sorted(self.D.flatMap(lambda kv: [kv[1][1:3]] if kv[1][0] == "state" else []).collect())
        return np.concatenate([w for _, w in parts])
