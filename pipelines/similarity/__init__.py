"""Image-similarity recommendation: exact all-pairs top-k on executors and an online recommender.

    from bigdl_py.pipelines.similarity import all_pairs_topk, Recommender, run_similarity
    topk, info = all_pairs_topk(spark, "embeddings.parquet", k=10, output_path="topk.parquet")
    summary = run_similarity(spark, "embeddings.parquet", "output/similarity", labels_col="label")
    Recommender.load("output/similarity/recommender").recommend(item_id, k=10)
"""
from bigdl_py.pipelines.similarity.allpairs import all_pairs_topk
from bigdl_py.pipelines.similarity.job import run_similarity
from bigdl_py.pipelines.similarity.lsh import lsh_topk, recall_at_k
from bigdl_py.pipelines.similarity.recommender import Recommender

__all__ = ["Recommender", "all_pairs_topk", "lsh_topk", "recall_at_k", "run_similarity"]
