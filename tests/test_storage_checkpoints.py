"""Checkpoints on any storage URI: a local folder and a real S3 server on loopback (moto).

Resume equals an uninterrupted run (local engine, and DistriOptimizer with both backends
writing its slices from the executors), only committed checkpoints are listed, and a
write cut short leaves the previous checkpoint loadable.
"""
import numpy as np
import pytest

from bigdl_py import storage
from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.engine import lineage
from bigdl_py.engine.distri import DistriOptimizer
from bigdl_py.nn import CrossEntropyLoss, zoo
from bigdl_py.optim import Adam, MaxIteration, SeveralIteration
from tests.s3_server import local_or_s3_root, s3_endpoint, s3_root  # noqa: F401 (fixtures)
from tests.test_distri_equivalence import SYNCS, mlp_data, partitioned_df
from tests.test_engine_checkpoint import make, weights


root = local_or_s3_root("ckpt")


def test_files_round_trip_and_list(root):
    storage.makedirs(storage.join(root, "d"))
    storage.write_bytes(storage.join(root, "d", "a.bin"), b"abc")
    storage.write_bytes(storage.join(root, "d", "b.bin"), lambda f: f.write(b"xyz"))
    assert storage.listdir(storage.join(root, "d")) == ["a.bin", "b.bin"]
    assert storage.read_bytes(storage.join(root, "d", "b.bin")) == b"xyz"
    storage.remove_tree(storage.join(root, "d"), first="a.bin")
    assert not storage.exists(storage.join(root, "d", "b.bin"))
    assert storage.listdir(storage.join(root, "d")) == []


def test_a_missing_file_names_the_uri(root):
    missing = storage.join(root, "nothing.json")
    with pytest.raises(FileNotFoundError, match=r"nothing\.json\S*: no such file") as error:
        storage.read_bytes(missing)
    assert "test:test@" not in str(error.value)  # the secret key stays out of messages


def test_an_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="gs://b/x: unsupported storage URI scheme 'gs'"):
        storage.resolve("gs://b/x")


def test_uris_keep_their_query_and_map_s3a():
    assert storage.join("s3a://k:s@b/r?scheme=http", "c", "f") == "s3a://k:s@b/r/c/f?scheme=http"
    assert storage.local_path("file:///tmp/x") == "/tmp/x" and storage.local_path("s3://b/x") is None
    assert not storage.renames_atomically("s3a://b/x") and storage.renames_atomically("hdfs://nn/x")


def test_local_engine_resumes_from_storage_like_an_uninterrupted_run(root):
    expected = make(Adam(), end_trigger=MaxIteration(9)).optimize().parameters_flat()[0].copy()
    make(Adam(), end_trigger=MaxIteration(5)).set_checkpoint(root, SeveralIteration(3)).optimize()
    assert ckpt.read_meta(ckpt.latest(root))["step"] == 5
    resumed = make(Adam(), end_trigger=MaxIteration(9)).set_checkpoint(root, SeveralIteration(3))
    resumed.optimize(resume_from="latest")
    np.testing.assert_array_equal(weights(resumed), expected)


def test_a_checkpoint_without_its_marker_is_not_listed(root):
    make(Adam(), end_trigger=MaxIteration(6)).set_checkpoint(root, SeveralIteration(3)).optimize()
    newest = ckpt.latest(root)
    storage.remove_tree(storage.join(newest, "slices"))  # as if the slices were gone too: never read
    fs, path = storage.resolve(storage.join(newest, ckpt.MARKER))
    fs.delete_file(path)
    assert storage.isfile(storage.join(newest, "checkpoint.json"))
    assert [storage.basename(p) for p in ckpt.list_checkpoints(root)] == ["ckpt-0000000003"]
    assert ckpt.read_meta(ckpt.latest(root))["step"] == 3


class Killed(BaseException):
    pass


@pytest.mark.parametrize("killed_at", ["slices/slice-00000.npz", "checkpoint.json", ckpt.MARKER])
def test_a_write_killed_midway_leaves_the_previous_checkpoint_loadable(root, monkeypatch, killed_at):
    make(Adam(), end_trigger=MaxIteration(3)).set_checkpoint(root, SeveralIteration(3)).optimize()
    previous = ckpt.load_model(ckpt.latest(root)).parameters_flat()[0].copy()
    write = storage.write_bytes

    def dying_write(uri, data):
        if storage.basename(uri.split("?")[0]) == storage.basename(killed_at) and "ckpt-0000000006" in uri:
            raise Killed(uri)
        write(uri, data)

    monkeypatch.setattr(storage, "write_bytes", dying_write)
    with pytest.raises(Killed):
        make(Adam(), end_trigger=MaxIteration(6)).set_checkpoint(root, SeveralIteration(3)).optimize(
            resume_from="latest")
    monkeypatch.undo()
    assert [storage.basename(p) for p in ckpt.list_checkpoints(root)] == ["ckpt-0000000003"]
    np.testing.assert_array_equal(ckpt.load_model(ckpt.latest(root)).parameters_flat()[0], previous)
    # The next commit removes what the killed write left; the committed checkpoints stay.
    make(Adam(), end_trigger=MaxIteration(9)).set_checkpoint(root, SeveralIteration(9)).optimize(
        resume_from="latest")
    assert [n for n in storage.listdir(root) if n != ckpt.LINEAGE_DIR] == ["ckpt-0000000003", "ckpt-0000000009"]


def distri(df, iterations, sync, seed=1):
    return DistriOptimizer(zoo.mlp([8, 16, 3], seed=seed), CrossEntropyLoss(), Adam(), df, batch_size=37,
                           end_trigger=MaxIteration(iterations), learning_rate=0.01, num_partitions=2, sync=sync,
                           lineage_every=2)


@pytest.mark.spark
@pytest.mark.parametrize("sync", SYNCS)
def test_distri_checkpoints_to_s3_and_resumes_like_an_uninterrupted_run(spark, s3_root, sync):
    x, y = mlp_data(120)
    df = partitioned_df(spark, x, y, [50, 70])
    expected = distri(df, 6, sync).optimize().parameters_flat()[0].copy()
    root = storage.join(s3_root, "ckpt")
    distri(df, 3, sync).set_checkpoint(root, SeveralIteration(3)).optimize()
    assert [storage.basename(p) for p in ckpt.list_checkpoints(root)] == ["ckpt-0000000003"]
    assert storage.listdir(storage.join(root, ckpt.LINEAGE_DIR)) == []  # recovery points end with the run
    resumed = distri(df, 6, sync, seed=99).set_checkpoint(root, SeveralIteration(3))
    np.testing.assert_array_equal(resumed.optimize(resume_from="latest").parameters_flat()[0], expected)


class FakeContext:
    def __init__(self, master, checkpoint_dir=None):
        self.master, self._dir = master, checkpoint_dir

    def getCheckpointDir(self):
        return self._dir


def test_recovery_checkpoints_go_where_every_host_can_write():
    cluster = FakeContext("spark://10.0.0.1:7077")
    assert lineage.lineage_root(cluster, "r1", "s3://b/rec") == "s3://b/rec/r1"
    assert lineage.lineage_root(cluster, "r1", checkpoint_path="hdfs:///ck") == "hdfs:///ck/lineage/r1"
    spark_dir = FakeContext("yarn", "hdfs://nn:8020/spark-ck/5d2a")
    assert lineage.lineage_root(spark_dir, "r1") == "hdfs://nn:8020/spark-ck/5d2a/bigdl_py-lineage/r1"
    assert lineage.lineage_root(FakeContext("local[2]"), "r1").endswith("bigdl_py-lineage/r1")
    with pytest.raises(ValueError, match="'spark://10.0.0.1:7077' need storage every executor can write; "
                                         "expected lineage_root="):
        lineage.lineage_root(cluster, "r1")


def test_no_recovery_location_is_needed_when_the_lineage_is_never_cut():
    assert not lineage.fires(0, MaxIteration(100))
    assert not lineage.fires(50, MaxIteration(49)) and lineage.fires(50, MaxIteration(50))
    assert not lineage.fires(50, MaxIteration(60), start_step=50)
