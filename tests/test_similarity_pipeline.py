"""The similarity pipeline end to end on real digits: run_similarity, the job CLI, fine-tuning."""
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from bigdl_py.pipelines.similarity.embeddings import fine_tune
from bigdl_py.pipelines.similarity.job import run_similarity
from bigdl_py.pipelines.similarity.mnist import mnist_catalogue, mnist_images
from bigdl_py.pipelines.similarity.quality import precision_at_k
from bigdl_py.pipelines.similarity.recommender import Recommender

pytestmark = pytest.mark.spark
DIGITS = 2000


@pytest.fixture(scope="module")
def digits(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist_sim")
    cat = mnist_catalogue(spark, str(out), limit=DIGITS, train_samples=6000, epochs=1)
    return out, cat


@pytest.fixture(scope="module")
def summary(spark, digits):
    out, cat = digits
    x, _ = mnist_images(DIGITS)
    return run_similarity(spark, cat["embeddings"], str(out / "sim"), k=10, labels_col="label",
                          image_of=lambda i: x[i], model_dir=cat["model_dir"], preprocess=cat["preprocess"],
                          lsh_options=dict(num_hash_tables=2, candidates=20))


def test_run_similarity_writes_results_and_a_summary(summary, digits):
    out, _ = digits
    sim = out / "sim"
    assert summary["items"] == DIGITS and summary["dim"] == 84
    topk = pq.read_table(sim / "topk.parquet").to_pandas()
    assert len(topk) == DIGITS * 10 and (topk.item != topk.neighbour).all()
    assert topk.groupby("item").score.apply(lambda s: (np.diff(s.to_numpy()[np.argsort(topk.loc[s.index, "rank"])])
                                                       <= 0).all()).all()
    assert json.loads((sim / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert (sim / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 0.0 < summary["lsh"]["recall_at_k"] <= 1.0
    assert summary["topk"]["items_per_s"] > 0 and summary["lsh"]["items_per_s"] > 0


def test_precision_by_class_on_digits_and_online_queries(summary, digits):
    _, cat = digits
    p = summary["precision_at_k"]
    assert sorted(p["by_class"]) == [str(c) for c in range(10)] and p["items"] == DIGITS
    assert p["overall"] > 0.8  # 2k digits and a LeNet-5 trained on 6k; the full run reaches >= 0.95
    assert summary["latency"]["by_id"]["p99_ms"] < 100
    rec = Recommender.load(summary["recommender_dir"])
    x, y = mnist_images(DIGITS)
    by_image = rec.recommend((x[5, :, :, 0] * 255).astype(np.uint8), k=10)
    assert by_image[0][0] == 5 and by_image[0][1] > 0.999  # the digit finds itself
    assert np.mean([y[i] == y[5] for i, _ in by_image[1:]]) >= 0.7


def test_fine_tuned_head_embeds_every_item_with_its_hidden_layer(spark):
    from pyspark.sql import functions as F

    from bigdl_py.pipelines.similarity.synthetic import synthetic_embeddings

    df = synthetic_embeddings(spark, 800, dim=16, clusters=40, noise=1.5, seed=2).withColumn(
        "label", F.col("cluster") % 5).cache()
    tuned, head = fine_tune(spark, df, "label", num_classes=5, hidden=16, epochs=8, batch_size=64)
    rows = tuned.toPandas()
    assert len(rows) == 800 and rows.features.map(len).eq(16).all()
    assert (rows.set_index("id").label == df.toPandas().set_index("id").label).all()
    assert np.stack(rows.features).min() >= 0  # the head's hidden ReLU features


@pytest.mark.slow
def test_job_runs_as_a_module_with_the_cli_flags(digits, tmp_path):
    _, cat = digits
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    proc = subprocess.run([sys.executable, "-m", "bigdl_py.pipelines.similarity.job", "--embeddings",
                           cat["embeddings"], "--k", "5", "--output", str(tmp_path / "job"), "--labels-col", "label",
                           "--quick", "--master", "local[2]"], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["items"] == DIGITS and result["k"] == 5 and result["quick"] is True
    assert os.path.isdir(tmp_path / "job" / "recommender")
