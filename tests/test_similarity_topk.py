"""Exact all-pairs top-k on Spark against brute-force numpy; the LSH baseline; bad catalogues."""
import numpy as np
import pandas as pd
import pytest

from bigdl_py.pipelines.similarity import allpairs
from bigdl_py.pipelines.similarity.allpairs import all_pairs_topk
from bigdl_py.pipelines.similarity.lsh import lsh_topk, recall_at_k
from bigdl_py.pipelines.similarity.synthetic import synthetic_embeddings

pytestmark = pytest.mark.spark


def _frame(spark, ids, x, id_type="long"):
    pdf = pd.DataFrame({"id": ids, "features": list(x)})
    return spark.createDataFrame(pdf, f"id {id_type}, features array<float>")


def _brute_force(x, k):
    """float64 cosine top-k per row without the row itself; also the gap after the k-th score."""
    xn = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    s = xn @ xn.T
    np.fill_diagonal(s, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")
    top = np.take_along_axis(s, order[:, :k + 1], axis=1)
    return order[:, :k], top[:, :k], top[:, k - 1] - top[:, k]


def _as_matrix(result, ids_to_row, n, k):
    pdf = result.toPandas().sort_values(["item", "rank"])
    assert (pdf.groupby("item")["rank"].apply(list) == pd.Series([list(range(1, k + 1))] * n,
                                                                  index=sorted(ids_to_row))).all()
    rows = pdf.item.map(ids_to_row).to_numpy().reshape(n, k)
    assert (rows == np.arange(n)[:, None]).all()
    return pdf.neighbour.map(ids_to_row).to_numpy().reshape(n, k), pdf.score.to_numpy().reshape(n, k)


@pytest.fixture(scope="module")
def random_catalogue():
    rng = np.random.default_rng(0)
    n, d = 1100, 24
    return (rng.standard_normal((n, d)) * rng.uniform(0.1, 5, (n, 1))).astype(np.float32)


def test_exact_topk_equals_brute_force_over_many_blocks_and_groups(spark, random_catalogue, tmp_path, monkeypatch):
    x = random_catalogue
    n, k = len(x), 7
    monkeypatch.setattr(allpairs, "GROUP_BLOCKS", 2)  # 6 blocks -> 3 catalogue groups whose top-ks are merged
    ids = np.arange(n, dtype=np.int64) * 5 + 3
    result, summary = all_pairs_topk(spark, _frame(spark, ids, x), k=k, block_rows=200,
                                     output_path=str(tmp_path / "topk.parquet"))
    assert (summary["items"], summary["dim"], summary["blocks"], summary["groups"]) == (n, 24, 6, 3)
    assert set(result.columns) == {"item", "neighbour", "score", "rank"}
    nb, scores = _as_matrix(result, {int(v): i for i, v in enumerate(ids)}, n, k)
    ref_nb, ref_scores, gap = _brute_force(x, k)
    np.testing.assert_allclose(scores, ref_scores, atol=2e-6)
    clear = gap > 1e-5  # rows whose k-th and (k+1)-th neighbours are not float32-tied
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(nb[clear], ref_nb[clear])


def test_string_ids_and_a_catalogue_smaller_than_k(spark):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    ids = [f"photos/{i}.jpg" for i in range(6)]
    result, _ = all_pairs_topk(spark, _frame(spark, ids, x, "string").withColumnRenamed("id", "path"), k=10)
    pdf = result.toPandas()
    assert len(pdf) == 6 * 5  # every other item, no padding rows
    ref_nb, ref_scores, _ = _brute_force(x, 5)
    got = pdf.sort_values(["item", "rank"])
    assert got.neighbour.tolist() == [ids[j] for j in ref_nb.ravel()]


def test_bad_catalogues_are_refused_with_counts(spark):
    x = np.random.default_rng(4).standard_normal((50, 4)).astype(np.float32)
    x[3] = np.nan
    x[7] = 0.0
    with pytest.raises(ValueError, match=r"2 bad row\(s\) of 50 \(1 with non finite, 1 with zero norm\)"):
        all_pairs_topk(spark, _frame(spark, np.arange(50), x), k=3)
    with pytest.raises(ValueError, match=r"id column 'id': expected unique ids, found 2 repeated row\(s\) among 50"):
        all_pairs_topk(spark, _frame(spark, np.arange(50) % 48, np.abs(np.nan_to_num(x)) + 1), k=3)
    with pytest.raises(ValueError, match="no id column"):
        all_pairs_topk(spark, _frame(spark, np.arange(50), x).withColumnRenamed("id", "key"), k=3)


@pytest.fixture(scope="module")
def clustered(spark):
    df = synthetic_embeddings(spark, 800, dim=16, clusters=30, noise=0.6, seed=1).cache()
    exact, _ = all_pairs_topk(spark, df, k=5)
    return df, exact


def test_lsh_with_sign_buckets_finds_nearly_all_and_scores_them_exactly(spark, clustered):
    df, exact = clustered
    # Buckets wider than the projections: each table only splits by the projection's sign, and
    # 12 tables leave almost no near pair split in all of them.
    approx, summary = lsh_topk(spark, df, k=5, bucket_length=1e3, num_hash_tables=12)
    assert summary["items"] == 800 and summary["pairs"] == 800 * 5
    assert recall_at_k(approx, exact) > 0.99
    joined = approx.join(exact, ["item", "rank"]).select(approx.score, exact.score.alias("s2")).toPandas()
    np.testing.assert_allclose(joined.score, joined.s2, atol=1e-5)


def test_lsh_with_small_buckets_misses_neighbours(spark, clustered):
    df, exact = clustered
    approx, summary = lsh_topk(spark, df, k=5, candidates=5, num_hash_tables=2)
    recall = recall_at_k(approx, exact)
    assert 0.0 < recall < 1.0
    assert summary["bucket_length"] < 0.1
