"""Save and load any Spark ML stage (a PipelineModel, an NNModel, ...) at any storage URI.

Spark writes stages through the JVM's Hadoop FileSystem, which knows local paths, HDFS
and whatever connectors the cluster installed; pyspark's own jars hold no S3 connector.
So for object stores (s3://, s3a://: see bigdl_py.storage) the stage is written by Spark
into a local temp folder on the driver, uploaded file by file, and committed by a
`_COMMITTED` marker written last; loading refuses a folder without the marker, and
downloads it to a local temp folder for Spark to read. Other URIs go straight to Spark.

Example:
    save_stage(pipeline_model, "s3://bucket/models/scorer", overwrite=True)
    same = load_stage(PipelineModel, "s3://bucket/models/scorer")
"""
import os
import tempfile

from bigdl_py import storage

MARKER = "_COMMITTED"


def on_object_store(uri):
    """True for URIs Spark's bundled Hadoop cannot write (s3://, s3a://)."""
    return not storage.renames_atomically(uri)


def save_stage(stage, uri, overwrite=False):
    """Write `stage` (an MLWritable) to `uri`.

    Args:
        stage: a Spark ML stage with `write()`.
        uri: a path or storage URI.
        overwrite: replace what is there; otherwise an existing save is a ValueError.
    """
    if (on_object_store(uri) or storage.local_path(uri) is not None) and storage.listdir(uri) and not overwrite:
        raise ValueError(f"{storage.redacted(uri)}: already exists; pass overwrite=True "
                         f"(or write().overwrite()) to replace it")
    if not on_object_store(uri):
        writer = stage.write()
        (writer.overwrite() if overwrite else writer).save(uri)
        return
    with tempfile.TemporaryDirectory(prefix="bigdl_py-stage-") as tmp:
        local = os.path.join(tmp, "stage")
        stage.write().save("file://" + local)
        storage.remove_tree(uri, first=MARKER)
        storage.upload_dir(local, uri)
    storage.write_bytes(storage.join(uri, MARKER), b"")


def load_stage(cls, uri):
    """The stage of class `cls` (an MLReadable) saved at `uri` (ValueError when not committed)."""
    if not on_object_store(uri):
        return cls.load(uri)
    if not storage.isfile(storage.join(uri, MARKER)):
        raise ValueError(f"{storage.redacted(uri)}: no {MARKER} marker; expected a complete saved stage "
                         f"(missing, or its save did not finish)")
    with tempfile.TemporaryDirectory(prefix="bigdl_py-stage-") as tmp:
        local = os.path.join(tmp, "stage")
        storage.download_dir(uri, local)
        return cls.load("file://" + local)
