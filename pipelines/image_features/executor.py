"""The executor side: Arrow batches of (path, content) -> Arrow batches of features and top-k classes.

Runs inside `mapInArrow`. Per batch: decode each file (Pillow), preprocess it,
run the feature network and the classifier head with our kernels
(`bigdl_py.serving.predict`), and emit one row per decodable image. Bad files
are either reported through the stats accumulator (policy "skip") or fail the
task with a ValueError naming the file (policy "error").

Time split, summed over tasks: `read` is the time the function waits for its
next input batch (file reading and the transfer from the JVM), `write` the time
it is suspended after handing a result batch on (the transfer back and the
Parquet writer downstream), the rest is measured around each step.
"""
import ctypes
import functools
import time

import numpy as np
from pyspark.accumulators import AccumulatorParam

from bigdl_py.pipelines.image_features.preprocess import BadImage, decode
from bigdl_py.serving import predict

STEPS = ("read", "decode", "preprocess", "infer", "write")
BAD_IMAGE_MARKER = "bigdl_py bad image"  # lets the driver find the executor's reason in a failed job


def empty_stats():
    # infer_cpu: CPU seconds of the forward passes, which machine load inflates far less than wall time
    return {**{step: 0.0 for step in STEPS}, "infer_cpu": 0.0, "images": 0, "bad": []}


class StatsParam(AccumulatorParam):
    """Accumulator of per-step seconds, image counts and the list of bad files."""

    def zero(self, value):
        return empty_stats()

    def addInPlace(self, a, b):
        for key, value in b.items():
            a[key] = a[key] + value
        return a


def output_schema():
    from pyspark.sql.types import (ArrayType, FloatType, IntegerType, StringType, StructField, StructType)

    return StructType([StructField("path", StringType(), False), StructField("width", IntegerType(), False),
                       StructField("height", IntegerType(), False),
                       StructField("features", ArrayType(FloatType(), False), False),
                       StructField("top_classes", ArrayType(IntegerType(), False), True),
                       StructField("top_labels", ArrayType(StringType(), False), True),
                       StructField("top_scores", ArrayType(FloatType(), False), True)])


def top_k(logits, k):
    """(indices, softmax probabilities) of the k largest logits per row, best first."""
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=1, keepdims=True)
    idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return idx.astype(np.int32), np.take_along_axis(probs, idx, axis=1).astype(np.float32)


def _list_column(values2d, pa_type):
    """Arrow list<...> column from a (rows, k) array, or all nulls when values2d is None."""
    import pyarrow as pa

    if values2d is None:
        return None
    n, k = values2d.shape
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32) if k else np.zeros(n + 1, np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values2d.reshape(-1), type=pa_type))


def _result_batch(paths, sizes, feats, classes, scores, labels):
    import pyarrow as pa

    n = len(paths)
    names = None if classes is None else np.array(labels, dtype=object)[classes]
    columns = [pa.array(paths, pa.string()), pa.array([s[0] for s in sizes], pa.int32()),
               pa.array([s[1] for s in sizes], pa.int32()), _list_column(feats, pa.float32()),
               _list_column(classes, pa.int32()), _list_column(names, pa.string()),
               _list_column(scores, pa.float32())]
    schema = pa.schema([pa.field("path", pa.string(), False), pa.field("width", pa.int32(), False),
                        pa.field("height", pa.int32(), False),
                        pa.field("features", pa.list_(pa.field("element", pa.float32(), False)), False),
                        pa.field("top_classes", pa.list_(pa.field("element", pa.int32(), False))),
                        pa.field("top_labels", pa.list_(pa.field("element", pa.string(), False))),
                        pa.field("top_scores", pa.list_(pa.field("element", pa.float32(), False)))])
    columns = [c if c is not None else pa.nulls(n, schema.field(i).type) for i, c in enumerate(columns)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


@functools.lru_cache(maxsize=1)
def keep_freed_memory():
    """Ask glibc to serve large blocks from the heap and keep freed memory (once per Python worker).

    Each forward pass allocates activations of tens of MB; by default glibc maps
    those fresh and unmaps them on free, so every batch pays the page faults of
    first touch again (measured: ~3x the CPU time of a warm forward). Same
    settings as the benchmarks' MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_,
    made at run time because Spark starts the worker. No-op without glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


def make_scorer(body_broadcast, head_broadcast, preprocessing, labels, top_k_classes, batch_size, on_bad_image,
                stats):
    """The mapInArrow function for one job (all arguments are shipped in its closure)."""

    def score(batches):
        keep_freed_memory()
        totals = empty_stats()
        body = body_broadcast.value()
        head = head_broadcast.value() if head_broadcast is not None else None
        k = min(top_k_classes, len(labels)) if head is not None else 0
        try:
            while True:
                t0 = time.perf_counter()
                batch = next(batches, None)
                totals["read"] += time.perf_counter() - t0
                if batch is None:
                    break
                out = _score_batch(batch, body, head, preprocessing, labels, k, batch_size, on_bad_image, totals)
                if out is not None:
                    t0 = time.perf_counter()
                    yield out
                    totals["write"] += time.perf_counter() - t0
        finally:
            stats.add(totals)

    return score


def _score_batch(batch, body, head, preprocessing, labels, k, batch_size, on_bad_image, totals):
    paths = batch.column("path").to_pylist()
    contents = batch.column("content")
    good, sizes, tensors = [], [], []
    for i, path in enumerate(paths):
        t0 = time.perf_counter()
        try:
            img = decode(contents[i].as_py())
        except BadImage as e:
            if on_bad_image == "error":
                raise ValueError(f"{BAD_IMAGE_MARKER} {path}: {e} (on_bad_image='error')") from None
            totals["bad"].append((path, str(e)))
            continue
        finally:
            totals["decode"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        tensors.append(preprocessing.to_tensor(img))
        totals["preprocess"] += time.perf_counter() - t0
        good.append(path)
        sizes.append(img.size)
    if not good:
        return None
    t0, c0 = time.perf_counter(), time.process_time()
    feats = predict(body, np.stack(tensors), batch_size)
    classes = scores = None
    if head is not None and k:
        classes, scores = top_k(predict(head, feats, batch_size), k)
    totals["infer"] += time.perf_counter() - t0
    totals["infer_cpu"] += time.process_time() - c0
    totals["images"] += len(good)
    return _result_batch(good, sizes, feats, classes, scores, labels)
