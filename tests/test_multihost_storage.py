"""Checkpoints on storage every host reaches: on three isolated hosts (no shared /tmp), a run
checkpoints into the shared folder and a second run resumes from it, ending with the weights
of an uninterrupted local run. The executors write and read their slices there themselves,
and the recovery checkpoints go to the checkpoint folder's lineage/ sub-folder by default."""
import os

import pytest

from tests.cluster_fixtures import JOB
from tests.multihost import isolated_hosts  # noqa: F401  (module-scoped fixture)
from tests.test_multihost import run_submitted

pytestmark = [pytest.mark.slow, pytest.mark.spark]


def without_lineage_root(args):
    if "--lineage-root" in args:
        i = args.index("--lineage-root")
        del args[i:i + 2]
    return args


def test_a_run_resumed_from_the_shared_checkpoint_folder_equals_the_local_oracle(isolated_hosts, tmp_path):
    from tests.test_distri_clusters import assert_equals_oracle, job_args

    root = f"{isolated_hosts.shared}/ckpt-resume"

    def args(iterations, sync, *resume):
        listed = without_lineage_root(job_args(tmp_path, iterations=iterations, sync=sync, checkpoint_dir=root,
                                               checkpoint_every=3, lineage_every=2))
        listed[listed.index("--cache-root") + 1] = str(tmp_path / "driver-only-cache")
        return listed + list(resume)

    first = run_submitted(isolated_hosts, tmp_path, "first", JOB, *args(5, "blockmanager"))
    assert (first["first_step"], first["last_step"]) == (1, 5)
    assert sorted(os.listdir(root)) == ["ckpt-0000000003", "ckpt-0000000005", "lineage"]
    assert os.listdir(os.path.join(root, "lineage")) == []  # the run's recovery points end with it
    second = run_submitted(isolated_hosts, tmp_path, "second", JOB, *args(8, "ring", "--resume"))
    assert (second["first_step"], second["last_step"]) == (6, 8)
    assert_equals_oracle(args(8, "ring"), tmp_path / "weights.npy")
