"""bench_similarity's --lsh-only recall: sampled items against their exact top-k."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.test_bench_study_scripts import load_script

pytestmark = pytest.mark.spark


def test_sampled_recall_counts_the_exact_neighbours_an_approximate_result_found(spark, tmp_path):
    from bigdl_py.pipelines.similarity.recommender import Recommender

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((60, 8)).astype(np.float32)
    path = str(tmp_path / "embeddings.parquet")
    pq.write_table(pa.table({"id": np.arange(60), "features": list(vectors)}), path)
    rec, k = Recommender.build(path), 4
    exact = [(q, n) for q in range(60) for n, _ in rec.recommend(q, k)]
    kept = exact[::2] + [(q, (q + 1) % 60) for q in range(60) if (q, (q + 1) % 60) not in exact]  # half + misses
    approx = spark.createDataFrame(kept, "item long, neighbour long")
    bench = load_script("bench_similarity.py")
    assert bench.sampled_recall_at_k(approx, path, k, queries=60) == pytest.approx(0.5)
    assert 0.0 <= bench.sampled_recall_at_k(approx, path, k, queries=7) <= 1.0
