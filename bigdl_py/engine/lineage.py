"""Where DistriOptimizer writes the recovery checkpoints that cut its lineage.

Every `lineage_every` iterations the slice owners (executors) write the weights and
optimizer state as a checkpoint, and training goes on from it: a lost executor's work is
recomputed from there (block-manager backend) or the ring restarts there. Executors
write those files themselves, so the folder must be on storage every host reaches.
The first of these that is set is used:
    1. `lineage_root=` of DistriOptimizer (or NNEstimator's lineageRoot);
    2. the `lineage/` sub-folder of the checkpoint path (`set_checkpoint`), which
       `checkpoint.latest` never lists;
    3. the SparkContext's checkpoint directory (`sc.setCheckpointDir`), as for RDD
       checkpoints, under `bigdl_py-lineage/`;
    4. on a `local` master only (driver and executors on one host), the local temp folder.
Otherwise, on a cluster master, training stops before its first iteration with an error
that names these settings. Each run writes under its own `<run id>` folder and deletes it
when training ends: recovery points are not meant for resuming (user checkpoints are).
"""
import os
import tempfile

from bigdl_py import storage
from bigdl_py.engine.checkpoint import LINEAGE_DIR
from bigdl_py.optim.triggers import MaxIteration


def single_host(master):
    """True for masters whose executors share the driver's host: local, local[n], local-cluster[...]."""
    return master.startswith("local")


def fires(lineage_every, end_trigger, start_step=0):
    """False when no lineage checkpoint can fire before the end trigger (or lineage_every is 0)."""
    if lineage_every <= 0:
        return False
    if isinstance(end_trigger, MaxIteration):
        return end_trigger.config["n"] // lineage_every > start_step // lineage_every
    return True


def lineage_root(sc, run_id, lineage_root=None, checkpoint_path=None):
    """The folder (path or URI) for this run's recovery checkpoints, or a ValueError on a cluster
    master where none is configured.

    Args:
        sc: the SparkContext.
        run_id: names this run's sub-folder.
        lineage_root: the user's explicit location, if any.
        checkpoint_path: the user's checkpoint root, if any.

    Example:
        lineage_root(sc, "run-1", checkpoint_path="s3://b/ckpt")  # "s3://b/ckpt/lineage/run-1"
    """
    if lineage_root:
        return storage.join(lineage_root, run_id)
    if checkpoint_path:
        return storage.join(checkpoint_path, LINEAGE_DIR, run_id)
    return spark_wide_folder(sc, "bigdl_py-lineage", run_id,
                             "lineage_every: the recovery checkpoints", "lineage_root= (NNEstimator: lineageRoot), "
                             "a checkpoint path (set_checkpoint / checkpointPath) or sc.setCheckpointDir(...) naming "
                             "a shared folder, hdfs:// or s3:// URI (or lineage_every=0 to never cut the lineage)")


def spark_wide_folder(sc, name, run_id, what, settings):
    """`name/run_id` under the SparkContext's checkpoint directory, or under the local temp folder on a
    local master; a ValueError saying that `what` needs `settings` on a cluster master without it.

    Example:
        spark_wide_folder(sc, "bigdl_py-early-stopping", "r1", "early stopping", "checkpointPath")
    """
    spark_dir = sc.getCheckpointDir()
    if spark_dir:
        return storage.join(spark_dir, name, run_id)
    if single_host(sc.master):
        return os.path.join(tempfile.gettempdir(), name, run_id)
    raise ValueError(f"{what} of master {sc.master!r} need storage every executor can write; expected {settings}")
