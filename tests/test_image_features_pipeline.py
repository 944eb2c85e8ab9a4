"""extract_features on Spark: Parquet schema and rows, features equal to the in-process model, bad files, the job."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bigdl_py.data.mnist import MNIST_MEAN, MNIST_STD, load_mnist
from bigdl_py.engine.local import LocalOptimizer
from bigdl_py.nn import CrossEntropyLoss, save_model, zoo
from bigdl_py.optim import SGD, MaxEpoch
from bigdl_py.pipelines.image_features import extract_features, load_extractor, write_preprocessing
from bigdl_py.pipelines.image_features.sample_images import write_sample_images

pytestmark = pytest.mark.spark
PIXEL_MEAN, PIXEL_STD = MNIST_MEAN * 255, MNIST_STD * 255  # in pixel units, as preprocessing.json wants
N_DIGITS = 60


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    return str(root), write_sample_images(str(root), n_mnist=N_DIGITS, bad_files=True)


@pytest.fixture(scope="module")
def lenet_dir(tmp_path_factory):
    """LeNet-5 trained for one epoch on 4,000 normalised MNIST digits, saved in our format."""
    x, y, _, _ = load_mnist()
    x = ((x[:4000] * 255 - PIXEL_MEAN) / PIXEL_STD).astype(np.float32)
    model = LocalOptimizer(zoo.lenet5(seed=0), CrossEntropyLoss(), SGD(momentum=0.9), x, y[:4000], batch_size=64,
                           learning_rate=0.05, end_trigger=MaxEpoch(1)).optimize()
    path = str(tmp_path_factory.mktemp("models") / "lenet5")
    save_model(model, path)
    write_preprocessing(path, channels=1, mean=PIXEL_MEAN, std=PIXEL_STD)
    return path


def read_rows(spark, summary):
    return {r.path.replace("file:", ""): r for r in spark.read.parquet(summary["outputs"]["features"]).collect()}


def expected_features(extractor, paths):
    """Features and logits of the in-process model on the same files."""
    x = np.stack([extractor.preprocessing.to_tensor(Image.open(p)) for p in paths])
    feats = extractor.body.forward(x)
    return feats, extractor.head.forward(feats)


@pytest.fixture(scope="module")
def lite0_run(spark, images, tmp_path_factory):
    root, manifest = images
    out = str(tmp_path_factory.mktemp("out") / "lite0")
    # The photos and the bad files (a Hadoop glob); the digits are the LeNet run's.
    summary = extract_features(spark, root + "/{photos,bad}", out, batch_size=4, top_k=3, progress=False)
    return out, summary, manifest


def test_lite0_output_schema_rows_and_summary(spark, lite0_run):
    out, summary, manifest = lite0_run
    df = spark.read.parquet(summary["outputs"]["features"])
    assert [(f.name, f.dataType.simpleString()) for f in df.schema.fields] == [
        ("path", "string"), ("width", "int"), ("height", "int"), ("features", "array<float>"),
        ("top_classes", "array<int>"), ("top_labels", "array<string>"), ("top_scores", "array<float>")]
    rows = read_rows(spark, summary)
    assert sorted(rows) == sorted(manifest["photos"])
    assert summary["images"] == len(manifest["photos"]) and summary["bad"] == 3
    assert summary["feature_dim"] == 1280 and summary["images_s"] > 0
    assert set(summary["time_split"]) == {"read", "decode", "preprocess", "infer", "write"}
    assert abs(sum(summary["time_split"].values()) - 1) < 0.01
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f) == summary
    chelsea = next(r for p, r in rows.items() if p.endswith("chelsea.jpg"))
    assert (chelsea.width, chelsea.height) == (451, 300) and chelsea.top_labels[0] == "Egyptian cat"
    assert len(chelsea.top_classes) == 3 and chelsea.top_scores == sorted(chelsea.top_scores, reverse=True)


def test_lite0_features_equal_the_in_process_model(spark, lite0_run):
    _, summary, manifest = lite0_run
    rows = read_rows(spark, summary)
    paths = sorted(manifest["photos"])
    feats, logits = expected_features(load_extractor("efficientnet-lite0"), paths)
    got = np.array([rows[p].features for p in paths], np.float32)
    np.testing.assert_allclose(got, feats, rtol=1e-4, atol=1e-5)
    assert [rows[p].top_classes[0] for p in paths] == list(logits.argmax(1))


def test_bad_files_are_listed_with_reasons(lite0_run):
    out, summary, manifest = lite0_run
    with open(summary["outputs"]["bad_images"]) as f:
        bad = json.load(f)
    reasons = {item["path"].replace("file:", ""): item["reason"] for item in bad["files"]}
    assert bad["count"] == 3 and sorted(reasons) == sorted(manifest["bad"])
    assert reasons[os.path.join(os.path.dirname(next(iter(manifest["bad"]))), "empty.png")] == "zero bytes"
    assert any(r.startswith("not an image") for r in reasons.values())
    assert any(r.startswith("truncated or corrupt") for r in reasons.values())


def test_lenet_features_are_the_penultimate_layer_and_classify_digits(spark, images, lenet_dir, tmp_path):
    root, manifest = images
    summary = extract_features(spark, os.path.join(root, "mnist"), str(tmp_path / "out"), model=lenet_dir,
                               batch_size=16, image_size=28, top_k=2, progress=False)
    assert summary["images"] == N_DIGITS and summary["bad"] == 0 and summary["feature_dim"] == 84
    rows = read_rows(spark, summary)
    paths = sorted(manifest["digits"])
    feats, _ = expected_features(load_extractor(lenet_dir, image_size=28), paths)
    np.testing.assert_allclose(np.array([rows[p].features for p in paths]), feats, rtol=1e-5, atol=1e-5)
    accuracy = np.mean([rows[p].top_classes[0] == manifest["digits"][p] for p in paths])
    assert accuracy >= 0.85
    assert rows[paths[0]].top_labels == [str(c) for c in rows[paths[0]].top_classes]


def test_on_bad_image_error_fails_naming_the_file_and_writes_no_features(spark, images, lenet_dir, tmp_path):
    root, manifest = images
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in [*sorted(manifest["digits"])[:3], os.path.join(root, "bad", "corrupt.jpg")]:
        (mixed / os.path.basename(path)).write_bytes(open(path, "rb").read())
    # A corrupt file fails the executors' task; an empty one (Spark gives it no row) fails before the job.
    for folder, match in ((str(mixed), r"bad image file:.*/corrupt\.jpg: not an image.*on_bad_image='error'"),
                          (os.path.join(root, "bad"), r"bad image file:.*/empty\.png: zero bytes")):
        with pytest.raises(ValueError, match=match):
            extract_features(spark, folder, str(tmp_path / "out"), model=lenet_dir, image_size=28,
                             on_bad_image="error", progress=False)
        assert not os.path.exists(tmp_path / "out" / "features")


def test_arguments_are_checked(spark, tmp_path):
    for kwargs, match in ((dict(batch_size=0), "batch_size"), (dict(top_k=-1), "top_k"),
                          (dict(on_bad_image="ignore"), "on_bad_image")):
        with pytest.raises(ValueError, match=match):
            extract_features(spark, str(tmp_path), str(tmp_path / "out"), **kwargs)
    with pytest.raises(ValueError, match="does not exist"):
        extract_features(spark, str(tmp_path / "missing"), str(tmp_path / "out"), model="efficientnet-lite0")


@pytest.mark.slow
def test_job_runs_with_python_m_and_spark_submit(images, lenet_dir, tmp_path):
    root, manifest = images
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable)
    args = ["--input", os.path.join(root, "mnist"), "--model", lenet_dir, "--image-size", "28", "--batch-size", "8"]
    out = subprocess.run([sys.executable, "-m", "bigdl_py.pipelines.image_features.job", "--master", "local[2]",
                          "--output", str(tmp_path / "m"), *args], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["images"] == N_DIGITS and "image features" in out.stderr  # the progress bar
    script = os.path.join(os.path.dirname(__file__), "..", "pipelines", "image_features", "job.py")
    submit = os.path.join(os.path.dirname(sys.executable), "spark-submit")
    out = subprocess.run([submit, "--master", "local[2]", "--conf", "spark.driver.host=127.0.0.1", script,
                          "--output", str(tmp_path / "s"), "--on-bad-image", "error", "--no-progress",
                          "--input", root, *args[2:]], capture_output=True, text=True, env=env, timeout=600)
    # spark-submit merges the Python driver's stderr into its own stdout
    messages = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("image features:")]
    assert out.returncode == 2, out.stderr[-3000:]
    assert messages and "bad image" in messages[-1] and "on_bad_image='error'" in messages[-1], out.stderr[-3000:]


@pytest.mark.slow
def test_bench_image_features_alternates_runs_and_compares_the_best_of_each():
    from tests.test_bench_study_scripts import run_script

    lines = run_script("bench_image_features.py", "--images", "6", "--batch-size", "4", "--repeats", "2")
    runs, summary = lines[:-1], lines[-1]
    assert [(r["system"], r["repeat"]) for r in runs] == [("ours", 0), ("torch", 0), ("ours", 1), ("torch", 1)]
    assert all(r["images"] == 6 and r["task_seconds"]["infer"] > 0 for r in runs)
    assert summary["images_s_ours"] == max(summary["images_s_ours_runs"]) and len(summary["images_s_torch_runs"]) == 2
    assert summary["ratio"] == round(summary["images_s_ours"] / summary["images_s_torch"], 3)
