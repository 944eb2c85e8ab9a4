"""Save and load NN estimators and models in Spark ML's layout, to any Hadoop-compatible path.

    path/metadata/part-00000   params as JSON (Spark's DefaultParamsWriter layout)
    path/model/config.json     architecture (bigdl_py.nn.save_model)
    path/model/weights.npz     weights, read with allow_pickle=False

Local paths (no scheme, or file://) are written directly and atomically: the whole
folder is built under a temp name beside `path` and then swapped in, so an
overwrite keeps the old save loadable until the new one is complete. Object stores
(s3://, s3a://) go through bigdl_py.storage, committed by a marker written last (see
ml/stage_storage.py). Other schemes (hdfs://, ...) go through the JVM's Hadoop
FileSystem from a local temp folder.
"""
import os
import shutil
import tempfile
from urllib.parse import urlparse

from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReadable, MLReader, MLWritable, MLWriter

from bigdl_py.atomic import atomic_directory
from bigdl_py.ml.stage_storage import load_stage, on_object_store, save_stage
from bigdl_py.nn.io import load_model, save_model

MODEL_DIR = "model"


def _local(path):
    """The local filesystem path for a local URI, or None for a remote one."""
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        return parsed.path if parsed.scheme else path
    return None


def _hadoop_fs(spark, path):
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath, jvm


def _on_local_filesystem(spark, path):
    """The absolute local path Hadoop resolves `path` to, or None when it is on another filesystem."""
    fs, hpath, _ = _hadoop_fs(spark, path)
    if fs.getUri().getScheme() != "file":
        return None
    return fs.makeQualified(hpath).toUri().getPath()


def _join(path, name):
    return path.rstrip("/") + "/" + name


def save_module(spark, module, path):
    """Write a Module under path/model, locally or through Hadoop."""
    target = _join(path, MODEL_DIR)
    local = _local(target)
    if local is not None:
        save_model(module, local)
        return
    with tempfile.TemporaryDirectory() as tmp:
        save_model(module, os.path.join(tmp, MODEL_DIR))
        fs, hpath, jvm = _hadoop_fs(spark, target)
        fs.copyFromLocalFile(False, True, jvm.org.apache.hadoop.fs.Path(os.path.join(tmp, MODEL_DIR)), hpath)


def load_module(spark, path):
    """The Module under path/model (ValueError naming the path when missing or damaged)."""
    source = _join(path, MODEL_DIR)
    local = _local(source)
    if local is not None:
        return load_model(local)
    tmp = tempfile.mkdtemp()
    try:
        fs, hpath, jvm = _hadoop_fs(spark, source)
        if not fs.exists(hpath):
            raise ValueError(f"{source}: missing; {path} is not a complete saved bigdl_py model")
        fs.copyToLocalFile(False, hpath, jvm.org.apache.hadoop.fs.Path(os.path.join(tmp, MODEL_DIR)), True)
        return load_model(os.path.join(tmp, MODEL_DIR))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class NNWriter(MLWriter):
    """Params as Spark ML metadata JSON, the module as config.json + weights.npz, and extra JSON."""

    def __init__(self, instance):
        super().__init__()
        self.instance = instance

    def save(self, path):
        """Write to `path`; a local one is built beside it and swapped in whole (see atomic_directory).

        pyspark's MLWriter.save with overwrite() deletes `path` before writing, which a
        failed write would leave with no model at all; here the old save stays until
        the new one is complete.
        """
        if on_object_store(path):
            save_stage(self.instance, path, self.shouldOverwrite)
            return
        local = _on_local_filesystem(self.sparkSession, path)
        if local is None:
            super().save(path)
            return
        if os.path.exists(local) and not self.shouldOverwrite:
            raise ValueError(f"{path}: already exists; use write().overwrite().save(path) to replace it")
        with atomic_directory(local) as tmp:
            self.saveImpl("file://" + tmp)

    def saveImpl(self, path):
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession.sparkContext,
                                         extraMetadata={"bigdl_py": self.instance._extra_metadata()})
        save_module(self.sparkSession, self.instance.getModel(), path)


class NNReader(MLReader):
    """Reads what NNWriter wrote into an instance of `cls` (ValueError for a non-model or damaged path)."""

    def __init__(self, cls):
        super().__init__()
        self.cls = cls

    def load(self, path):
        if on_object_store(path):
            return load_stage(self.cls, path)
        expected = f"{self.cls.__module__}.{self.cls.__name__}"
        try:
            metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession.sparkContext)
        except Exception as e:  # Py4J/Spark errors for a missing folder or unreadable files
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{path}: not a saved Spark ML stage (cannot read {path}/metadata: "
                             f"{first_line})") from None
        if metadata.get("class") != expected:
            raise ValueError(f"{path}: holds a {metadata.get('class')!r}, expected {expected!r}")
        instance = self.cls._from_saved(load_module(self.sparkSession, path), metadata.get("bigdl_py") or {})
        instance._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(instance, metadata)
        return instance


class NNPersistable(MLWritable, MLReadable):
    """`write()` / `read()` of our estimators and models (params JSON + config.json + weights.npz)."""

    def write(self):
        return NNWriter(self)

    @classmethod
    def read(cls):
        return NNReader(cls)
