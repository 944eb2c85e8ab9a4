"""extract_features: image files -> Parquet of features and top-k classes, on Spark executors.

Output folder:
    features/          Parquet: path, width, height, features array<float>,
                       top_classes array<int>, top_labels array<string>,
                       top_scores array<float> (the top_* columns are null
                       when the model has no classifier head)
    bad_images.json    {"count", "files": [{"path", "reason"}]}: files that are not
                       decodable images (undecodable, truncated, zero bytes)
    summary.json       the returned summary
Each is written atomically (temp name + rename).
"""
import os
import re
import time

from bigdl_py.atomic import atomic_directory, atomic_write_json
from bigdl_py.pipelines.image_features.executor import (BAD_IMAGE_MARKER, STEPS, StatsParam, empty_stats,
                                                        make_scorer, output_schema)
from bigdl_py.pipelines.image_features.extractor import load_extractor
from bigdl_py.pipelines.image_features.progress import job_progress
from bigdl_py.serving import ModelBroadcast
from bigdl_py.shipping import ensure_importable_on_executors

IMAGE_GLOB = "*.{png,PNG,jpg,JPG,jpeg,JPEG}"
ON_BAD_IMAGE = ("skip", "error")


def _local_dir(output_path):
    """Output folder as a local path (the driver writes the sidecar files and renames atomically)."""
    path = output_path[len("file://"):] if output_path.startswith("file://") else output_path
    if "://" in path:
        raise ValueError(f"output_path: expected a local directory or file:// URI, received {output_path!r}")
    return os.path.abspath(path)


def _check_args(batch_size, top_k, on_bad_image):
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, received {batch_size!r}")
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k: expected an integer >= 0, received {top_k!r}")
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image: expected one of {ON_BAD_IMAGE}, received {on_bad_image!r}")


def read_images(spark, input_path):
    """DataFrame (path, content) of every PNG/JPEG file under input_path (recursively)."""
    if "://" not in input_path and not re.search(r"[*?\[{]", input_path) and not os.path.exists(input_path):
        raise ValueError(f"input_path: {input_path} does not exist")
    return (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
            .option("pathGlobFilter", IMAGE_GLOB).load(input_path).select("path", "content"))


def _uri(path):
    """One spelling per file: Hadoop lists file:///x, binaryFile rows say file:/x."""
    return re.sub(r"^file:/+", "file:/", path)


def files_spark_skips(spark, df):
    """[(path, reason)] of listed files that binaryFile gives no row for (Spark drops empty files)."""
    listed = {_uri(p) for p in df.inputFiles()}
    if df.count() == len(listed):  # no content is read for a count
        return []
    rows = {_uri(r.path) for r in df.select("path").collect()}
    jvm, conf = spark.sparkContext._jvm, spark.sparkContext._jsc.hadoopConfiguration()
    out = []
    for path in sorted(listed - rows):
        hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
        size = hadoop_path.getFileSystem(conf).getFileStatus(hadoop_path).getLen()
        out.append((path, "zero bytes" if size == 0 else f"not read by Spark ({size} bytes)"))
    return out


def _bad_image_error(exc):
    """The executor's ValueError text for a bad image inside a failed Spark job, or None."""
    text = str(exc)
    start = text.find(BAD_IMAGE_MARKER)
    if start < 0:
        return None
    return text[start + len(BAD_IMAGE_MARKER):].strip().splitlines()[0]


def _run(spark, df, features_dir, scorer, batch_size, progress):
    """Write the scored rows as Parquet into features_dir (atomically)."""
    conf_key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    previous = spark.conf.get(conf_key)
    spark.conf.set(conf_key, str(batch_size))  # one Arrow batch = one inference batch
    try:
        with job_progress(spark.sparkContext, "image features", enabled=progress):
            with atomic_directory(features_dir) as tmp:
                df.mapInArrow(scorer, output_schema()).write.mode("overwrite").parquet("file://" + tmp)
    finally:
        spark.conf.set(conf_key, previous)


def extract_features(spark, input_path, output_path, model="efficientnet-lite0", batch_size=32, image_size=224,
                     resize="crop", top_k=5, on_bad_image="skip", progress=True):
    """Extract CNN features of every PNG/JPEG image under `input_path` into Parquet under `output_path`.

    Args:
        spark: the SparkSession.
        input_path: folder or Hadoop-compatible URI, read recursively.
        output_path: local output folder (see the module docstring for its files).
        model: "efficientnet-lite0" (ImageNet weights) or a directory written by
            bigdl_py.nn.save_model (features = the input of its final Linear).
        batch_size: images per Arrow batch and per forward pass.
        image_size: square model input size (28 for LeNet-5).
        resize: "crop" (keep aspect, centre crop) or "plain" (stretch).
        top_k: classes per image with their softmax scores (0: none).
        on_bad_image: "skip" (count and list bad files, finish) or "error" (fail).
        progress: show a task progress bar on the driver.
    Returns:
        the summary dict (images, bad, images_s, time split, output paths), also
        written as summary.json.
    Raises:
        ValueError for bad arguments, a model that cannot take the images, or
        (on_bad_image="error") the first bad file, naming it and the reason.
    """
    _check_args(batch_size, top_k, on_bad_image)
    out_dir = _local_dir(output_path)
    start = time.perf_counter()
    extractor = load_extractor(model, image_size, resize)
    sc = spark.sparkContext
    ensure_importable_on_executors(sc)
    df = read_images(spark, input_path)
    # Files Spark gives no row (empty ones): "error" looks before the job; "skip" only when
    # the rows do not add up afterwards, which spares the common case a counting job.
    skipped = files_spark_skips(spark, df) if on_bad_image == "error" else None
    if skipped:
        path, reason = skipped[0]
        raise ValueError(f"bad image {path}: {reason} (on_bad_image='error'); {len(skipped)} such file(s)")
    body = ModelBroadcast(sc, extractor.body)
    head = ModelBroadcast(sc, extractor.head) if extractor.head is not None else None
    stats = sc.accumulator(empty_stats(), StatsParam())
    scorer = make_scorer(body, head, extractor.preprocessing, extractor.labels or [], top_k, batch_size,
                         on_bad_image, stats)
    os.makedirs(out_dir, exist_ok=True)
    features_dir = os.path.join(out_dir, "features")
    try:
        _run(spark, df, features_dir, scorer, batch_size, progress)
    except Exception as e:  # py4j/PySpark wrap the executor's error: surface ours as a ValueError
        reason = _bad_image_error(e)
        if reason is None:
            raise
        raise ValueError(f"bad image {reason}") from None
    finally:
        for b in (body, head):
            if b is not None:
                b.unpersist()
    rows = spark.read.parquet("file://" + features_dir).count()
    undecodable = dict(stats.value["bad"])  # a retried task reports its files twice
    if skipped is None:
        listed = {_uri(p) for p in df.inputFiles()}
        skipped = [] if rows + len(undecodable) == len(listed) else files_spark_skips(spark, df)
    bad = sorted(dict(undecodable, **dict(skipped)).items())
    bad_file = os.path.join(out_dir, "bad_images.json")
    atomic_write_json(bad_file, {"count": len(bad), "files": [{"path": p, "reason": r} for p, r in bad]})
    wall = time.perf_counter() - start
    summary = _summary(extractor, stats.value, rows, len(bad), wall, batch_size, on_bad_image,
                       {"features": features_dir, "bad_images": bad_file,
                        "summary": os.path.join(out_dir, "summary.json")})
    atomic_write_json(summary["outputs"]["summary"], summary)
    return summary


def _summary(extractor, stats, rows, bad, wall, batch_size, on_bad_image, outputs):
    task_seconds = {step: round(stats[step], 3) for step in STEPS}
    busy = sum(task_seconds.values()) or 1.0
    p = extractor.preprocessing
    return {
        "model": extractor.name, "feature_dim": extractor.feature_dim, "image_size": p.image_size,
        "resize": p.resize, "batch_size": batch_size, "on_bad_image": on_bad_image,
        "images": rows, "bad": bad, "wall_s": round(wall, 3), "images_s": round(rows / wall, 2),
        "task_seconds": task_seconds, "time_split": {k: round(v / busy, 3) for k, v in task_seconds.items()},
        "infer_cpu_s": round(stats["infer_cpu"], 3), "outputs": outputs,
    }
