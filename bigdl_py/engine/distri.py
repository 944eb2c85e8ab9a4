"""DistriOptimizer: exact synchronous SGD on Spark executors.

Each iteration, every training partition computes the gradient SUM over its share
of the global batch (chosen by the same PartitionedSampler the LocalOptimizer
uses), an all-reduce sums the pieces per slice, divides by the number of samples
and runs the optimizer on each slice where its state lives. With the same partition
sizes and seed this reproduces LocalOptimizer's weights to float32 round-off.

The training loop is BaseOptimizer.run_training (engine/base.py), over one of two sync
backends: "blockmanager" (one Spark job of two stages per iteration, slices moved as
Spark shuffle blocks; engine/blockmanager_backend.py, sync/blockmanager.py) and "ring"
(one barrier stage for the whole run, TCP all-reduce between the tasks;
engine/ring_driver.py, sync/ring.py). What the executors compute, whichever backend
moves the slices, is in engine/replica.py.
"""
import json
import logging
import time

import numpy as np

from bigdl_py import storage
from bigdl_py.data.partitions import grouped_by_rank, materialize_dataframe
from bigdl_py.engine import lineage
from bigdl_py.engine.base import BaseOptimizer, sum_reduction
from bigdl_py.engine.blockmanager_backend import BlockManagerBackend
from bigdl_py.engine.ring_driver import RingDriver
from bigdl_py.engine.sampling import PartitionedSampler
from bigdl_py.engine.sync_config import Auto, Ring, sync_config
from bigdl_py.engine.sync_deprecation import with_deprecated_options
from bigdl_py.nn.input_spec import input_spec
from bigdl_py.nn.module import from_config
from bigdl_py.shipping import ensure_importable_on_executors
from bigdl_py.sync.blockmanager import slice_bounds
from bigdl_py.sync.choice import choose_backend
from bigdl_py.sync.ring import owner_chunks

_LOG = logging.getLogger("bigdl_py")


class DistriOptimizer(BaseOptimizer):
    """Train `model` on a Spark DataFrame (or RDD of samples) with synchronous data-parallel SGD.

    Args:
        model, criterion, optim_method, batch_size, end_trigger, learning_rate,
        schedule, seed: as LocalOptimizer (batch_size is the GLOBAL batch).
        df: DataFrame with a features column (vector, array, or a list of numeric
            columns) and a numeric label column; or an RDD of (features ndarray,
            label) tuples (features_col/label_col are then unused).
        features_col, label_col, feature_shape: see data.partitions.materialize_dataframe.
        num_partitions: training partitions P (default: Spark's default parallelism).
        num_slices: slices of the flat vector (default P).
        bad_rows: "error" (default) or "skip".
        bad_rows_param: the name the bad-row error tells the user to set ("bad_rows"; an
            estimator passes its own, e.g. "badRows").
        cache_root: folder for the converted partitions (must be readable by executors).
        lineage_every: cut the RDD lineage (write the slices and reload them) every
            this many iterations, so recovery replays at most that many (for "ring":
            write a recovery checkpoint every this many iterations); 0 never cuts it.
        lineage_root: where the executors write those recovery checkpoints, a path or
            URI every host reaches (file://, hdfs://, s3://). Default: the `lineage/`
            sub-folder of the checkpoint path, else the SparkContext's checkpoint
            directory, else (local masters only) a local temp folder; on a cluster
            master with none of these, optimize() fails before training (see
            engine/lineage.py).
        sync: the all-reduce backend and its options (engine/sync_config.py):
            BlockManager(compress=...) or "blockmanager" (default; one Spark job per
            iteration), Ring(timeout=..., idle_timeout=..., max_restarts=...) or "ring"
            (one barrier stage, TCP all-reduce between the tasks), or Auto() or "auto"
            (picked from the model size and a measured iteration; the choice is logged
            and kept in `sync_choice`). The JSON form ({"ring": {"timeout": 60}}) is
            taken too.
        compress, ring_timeout, ring_idle_timeout, max_restarts: deprecated spellings of
            BlockManager(compress=...) and Ring(timeout=..., idle_timeout=...,
            max_restarts=...); they warn (DeprecationWarning) and will be removed.

    Example:
        opt = DistriOptimizer(lenet5(), CrossEntropyLoss(), SGD(momentum=0.9), df,
                              batch_size=256, feature_shape=(28, 28, 1))
        model = opt.optimize()
    """

    def __init__(self, model, criterion, optim_method, df, batch_size, end_trigger=None, learning_rate=0.01,
                 schedule=None, seed=0, features_col="features", label_col="label", feature_shape=None,
                 num_partitions=None, num_slices=None, bad_rows="error", compress=None, cache_root=None,
                 lineage_every=50, lineage_root=None, threads_per_task=1, sync="blockmanager", ring_timeout=None,
                 ring_idle_timeout=None, max_restarts=None, bad_rows_param="bad_rows"):
        super().__init__(model, criterion, optim_method, batch_size, end_trigger, learning_rate, schedule, seed)
        self.sync = with_deprecated_options(sync_config(sync), compress=compress, timeout=ring_timeout,
                                            idle_timeout=ring_idle_timeout, max_restarts=max_restarts)
        self.sc = df.context if _is_rdd(df) else df.sparkSession.sparkContext
        ensure_importable_on_executors(self.sc)
        self.data_spec = dict(features_col=features_col, label_col=label_col, feature_shape=feature_shape,
                              cache_root=cache_root, bad_rows=bad_rows, bad_rows_param=bad_rows_param)
        P = num_partitions or self.sc.defaultParallelism
        self.num_slices = num_slices or P
        # The data tokens are co-partitioned with the all-reduce's shuffles, which are this wide.
        self.key_partitions = max(self.num_slices, P)
        self.data = self._materialize(df, P)
        self.lineage_every = int(lineage_every)
        if self.lineage_every < 0:
            raise ValueError(f"lineage_every: expected an integer >= 0, received {lineage_every!r}")
        self.lineage_root = lineage_root
        self.threads_per_task = int(threads_per_task)
        self.sampler = PartitionedSampler(self.data.sizes, self.batch_size, self.seed)
        self.metrics = []  # per-iteration timing breakdown
        self.sync_choice = None  # (backend name, reason) once optimize() resolved the sync config
        self.ring_task_pids = []  # Python worker pids of the running ring tasks (diagnostics, fault tests)
        # The ring tasks' last start, {phase: ms of the slowest rank} (ring_worker._run_rank); {} otherwise.
        self.start_split_ms = {}

    def _materialize(self, data, num_partitions, pins=None):
        spec = self.data_spec
        if _is_rdd(data):
            from bigdl_py.data.rdd_input import materialize_rdd  # the lead's module, landing separately

            return materialize_rdd(data, spec["feature_shape"], num_partitions, spec["cache_root"], spec["bad_rows"],
                                   self.key_partitions, spec["bad_rows_param"], pins)
        return materialize_dataframe(data, spec["features_col"], spec["label_col"], spec["feature_shape"],
                                     num_partitions, spec["cache_root"], spec["bad_rows"], self.key_partitions,
                                     input_spec(self.model), spec["bad_rows_param"], pins)

    def set_validation(self, df, metrics, trigger=None, batch_size=None):
        """Validate on a DataFrame (or an RDD of samples), on the executors, whenever `trigger` fires."""
        # Validation partition p is written beside training partition p, where the tasks that read it run.
        data = self._materialize(df, self.data.num_partitions, pins=self.data.tokens)
        self.validation = dict(data=data, metrics=list(metrics), trigger=trigger or _every_epoch(),
                               batch_size=batch_size or max(self.batch_size, 256))
        return self

    def set_gradient_clipping(self, max_norm=None, value_range=None):
        if max_norm is not None:
            raise ValueError("max_norm: clipping by global norm is not supported by DistriOptimizer yet "
                             "(it needs the norm of the summed gradient across slices); use value_range")
        return super().set_gradient_clipping(max_norm, value_range)

    # ---- the training loop ----------------------------------------------------------
    def optimize(self, resume_from=None):
        """Train until the end trigger fires; returns the model.

        resume_from: a checkpoint directory or URI (either backend's, or the local
        engine's), or "latest" for the newest committed one under the checkpoint path.
        """
        position, source = self.resume(resume_from)
        weights = self.model.parameters_flat()[0]
        boundaries = [start for _, start, _ in self.model.parameter_segments()]
        bounds = slice_bounds(weights.size, self.num_slices, boundaries)
        run_id = f"{self.data.location.run_id}-{time.time_ns()}"
        self.lineage_dir = None
        if lineage.fires(self.lineage_every, self.end_trigger, position[0]):
            self.lineage_dir = lineage.lineage_root(self.sc, run_id, self.lineage_root,
                                                    self.checkpoint and self.checkpoint["path"])
        try:
            options = self._resolve_sync()
            if isinstance(options, Ring):
                backend = self._ring_backend(options, run_id, bounds, boundaries, source)
            else:
                backend = BlockManagerBackend(self, options, run_id, bounds, boundaries)
            return self.run_training(backend, position, source)
        finally:
            if self.lineage_dir is not None:
                storage.remove_tree(self.lineage_dir)

    def recovery_due(self, step):
        """True when the recovery checkpoint of `step` is due (see lineage_every)."""
        return self.lineage_dir is not None and step % self.lineage_every == 0

    def recovery_root(self):
        """The run's lineage folder (see lineage_root)."""
        return self.lineage_dir

    def step_entry(self, step, epoch, loss, lr, wall, count, times):
        """The per-iteration log entry, with where its time went; also appended to `metrics`."""
        entry = super().step_entry(step, epoch, loss, lr, wall, count, times)
        self.metrics.append(entry)
        return entry

    def ring_ranks(self):
        """Barrier tasks of the ring: one per training partition, at most one per task slot.

        A barrier stage needs all its tasks running at once; with fewer slots than
        partitions each task trains a contiguous group of partitions.
        """
        return max(1, min(self.data.num_partitions, self.sc.defaultParallelism))

    def _resolve_sync(self):
        """The options of the backend this run uses (Ring or BlockManager); sets `sync_choice`."""
        if not isinstance(self.sync, Auto):
            self.sync_choice = (self.sync.name, "requested")
            return self.sync
        compute_s = _measure_compute(self.model, self.criterion, self.data.feature_shape,
                                     -(-self.batch_size // self.data.num_partitions), self.threads_per_task)
        t0 = time.perf_counter()
        self.sc.parallelize(range(self.ring_ranks()), self.ring_ranks()).count()
        self.sync_choice = choose_backend(self.model.num_parameters(), compute_s, self.ring_ranks(),
                                          time.perf_counter() - t0)
        _LOG.warning("DistriOptimizer sync='auto' chose %r: %s", *self.sync_choice)
        return self.sync.pick(self.sync_choice[0])

    def _ring_backend(self, options, run_id, bounds, boundaries, source):
        R, P = self.ring_ranks(), self.data.num_partitions
        chunks, owners = owner_chunks(bounds, R)
        v = self.validation
        cfg = dict(run_id=run_id, model_config=json.dumps(self.model.get_config()),
                   criterion_config=json.dumps(self.criterion.get_config()), threads=self.threads_per_task,
                   optim_config=self.optim_method.get_config(), sampler=self.sampler, seed=self.seed,
                   location=self.data.location, feature_shape=self.data.feature_shape,
                   partitions=[[p for p in range(P) if p * R // P == r] for r in range(R)],
                   bounds=bounds, chunks=chunks, owners=owners, boundaries=boundaries,
                   clip_value=self.clip_value, initial=None if source else self.model.parameters_flat()[0].copy(),
                   validation=v and dict(location=v["data"].location, feature_shape=v["data"].feature_shape,
                                         metrics=v["metrics"], batch_size=v["batch_size"]))
        datasets = ([v["data"]] if v else []) + [self.data]
        cfg["datasets"] = [(d.location, int(np.prod(d.feature_shape))) for d in datasets]
        # Rank r runs where training partition r's token wrote its files, so its task reads only
        # the validation chunks (first in the input) and the training files are not rebuilt.
        return RingDriver(self, options, cfg, R, grouped_by_rank(datasets, R, pins=self.data.tokens))


def _is_rdd(data):
    from pyspark import RDD

    return isinstance(data, RDD)


def _measure_compute(model, criterion, feature_shape, share, threads):
    """Seconds of one forward/backward over a partition's share, measured on the driver (best of 3)."""
    from bigdl_py.kernels.threads import set_num_threads

    replica = from_config(model.get_config())
    replica.parameters_flat()
    replica.set_input_grad_needed(False)
    loss = sum_reduction(criterion)
    x = np.random.default_rng(0).standard_normal((share,) + tuple(feature_shape)).astype(np.float32)
    set_num_threads(threads)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        out = replica.forward(x)
        y = np.zeros(len(out), dtype=np.int64)
        replica.backward(x, loss.forward_backward(out, y)[1])
        best = min(best, time.perf_counter() - t0)
    return best


def _every_epoch():
    from bigdl_py.optim.triggers import EveryEpoch
    return EveryEpoch()
