"""Similarity job: exact all-pairs top-k, the MLlib LSH baseline, quality and the online recommender.

    spark-submit pipelines/similarity/job.py --embeddings PARQUET --k 10 --output DIR
    python -m bigdl_py.pipelines.similarity.job --embeddings PARQUET --k 10 --output DIR [--labels-col label]

Writes under DIR: topk.parquet (item, neighbour, score, rank), lsh_topk.parquet,
recommender/ (for Recommender.load), grid.png when images are available, and
summary.json (the dict run_similarity returns); prints the summary as JSON.
"""
import argparse
import json
import os
import time

import numpy as np

from bigdl_py.atomic import atomic_write_json
from bigdl_py.pipelines.similarity.allpairs import all_pairs_topk
from bigdl_py.pipelines.similarity.blocks import resolve_id_col
from bigdl_py.pipelines.similarity.lsh import lsh_topk, recall_at_k
from bigdl_py.pipelines.similarity.quality import plot_grid, precision_at_k
from bigdl_py.pipelines.similarity.recommender import Recommender

QUICK_ITEMS = 5000     # catalogue size in quick mode
LATENCY_QUERIES = 500  # online queries timed (quick: 100)
GRID_QUERIES = 6


def _log(message):
    print(f"[similarity] {message}", flush=True)


def measure_latency(recommender, queries, k):
    """p50/p99/max milliseconds of recommender.recommend over `queries` (after one warm-up)."""
    recommender.recommend(queries[0], k)
    times = []
    for q in queries:
        t = time.perf_counter()
        recommender.recommend(q, k)
        times.append((time.perf_counter() - t) * 1000)
    return dict(p50_ms=round(float(np.percentile(times, 50)), 3), p99_ms=round(float(np.percentile(times, 99)), 3),
                max_ms=round(float(np.max(times)), 3), queries=len(times))


def run_similarity(spark, embeddings_path, output_dir, k=10, labels_col=None, quick=False, id_col=None,
                   image_of=None, model_dir=None, preprocess=None, lsh_options=None, block_rows=None):
    """The similarity pipeline on an embeddings Parquet; returns (and writes) a summary dict.

    Args:
        embeddings_path: Parquet with an id column and `features` (array<float>).
        output_dir: folder for the results (created).
        k: neighbours per item.
        labels_col: a label column of the embeddings for precision@k by class.
        quick: use only the first QUICK_ITEMS items (by id) and fewer latency queries.
        image_of: optional id -> image array, for the PNG grid and image-query latency.
        model_dir, preprocess: the embedding model (saved-model dir) and its image
            preprocessing, stored in the recommender for queries by image.
        lsh_options: keyword arguments for lsh_topk.
    Returns:
        dict with items, k, topk (ours: seconds, items_per_s), lsh (seconds,
        items_per_s, recall_at_k), precision_at_k (overall, by_class) when labelled,
        latency (p50/p99 ms for id queries, and image queries when possible), paths.
    """
    from pyspark.sql import functions as F

    os.makedirs(output_dir, exist_ok=True)
    df = spark.read.parquet(embeddings_path)
    id_col = resolve_id_col(df, id_col)
    if labels_col is not None and labels_col not in df.columns:
        raise ValueError(f"labels column {labels_col!r} not found; {embeddings_path} has columns {sorted(df.columns)}")
    if quick:
        embeddings_path = os.path.join(output_dir, "embeddings_quick.parquet")
        df.orderBy(id_col).limit(QUICK_ITEMS).write.mode("overwrite").parquet(embeddings_path)
        df = spark.read.parquet(embeddings_path)
    _log(f"exact all-pairs top-{k} on the executors")
    topk_path = os.path.join(output_dir, "topk.parquet")
    exact, ours = all_pairs_topk(spark, df, k=k, output_path=topk_path, id_col=id_col, block_rows=block_rows)
    _log(f"ours: {ours['items']} items in {ours['seconds']} s; LSH baseline")
    lsh_path = os.path.join(output_dir, "lsh_topk.parquet")
    approx, lsh = lsh_topk(spark, df, k=k, id_col=id_col, output_path=lsh_path, **(lsh_options or {}))
    lsh["recall_at_k"] = round(recall_at_k(approx, exact), 4)
    _log(f"LSH: {lsh['seconds']} s, recall@{k} {lsh['recall_at_k']}")
    summary = dict(pipeline="similarity", items=ours["items"], dim=ours["dim"], k=k, quick=quick,
                   topk=ours, lsh=lsh, topk_path=topk_path, lsh_path=lsh_path)
    if labels_col is not None:
        labels = df.select(F.col(id_col).alias("id"), labels_col)
        summary["precision_at_k"] = precision_at_k(exact, labels, labels_col)
        summary["lsh_precision_at_k"] = round(precision_at_k(approx, labels, labels_col)["overall"], 4)
        _log(f"precision@{k}: {summary['precision_at_k']['overall']:.4f}")

    rec_dir = os.path.join(output_dir, "recommender")
    Recommender.build(embeddings_path, id_col=id_col, model_dir=model_dir, preprocess=preprocess).save(rec_dir)
    rec = Recommender.load(rec_dir)  # time what a fresh process would load
    rng = np.random.default_rng(0)
    picks = rng.choice(len(rec.ids), size=min(len(rec.ids), 100 if quick else LATENCY_QUERIES), replace=False)
    summary["latency"] = dict(by_id=measure_latency(rec, [rec.ids[i].item() for i in picks], k))
    if image_of is not None and rec.model is not None:
        summary["latency"]["by_image"] = measure_latency(rec, [np.asarray(image_of(rec.ids[i].item()))
                                                               for i in picks[:100]], k)
    summary["recommender_dir"] = rec_dir
    _log(f"online p50 {summary['latency']['by_id']['p50_ms']} ms, p99 {summary['latency']['by_id']['p99_ms']} ms")
    if image_of is not None:
        queries = [rec.ids[i].item() for i in picks[:GRID_QUERIES]]
        grid = os.path.join(output_dir, "grid.png")
        plot_grid(grid, [(q, rec.recommend(q, min(k, 8))) for q in queries], image_of,
                  title="queries (left) and their top recommendations, cosine scores")
        summary["grid_png"] = grid
    atomic_write_json(os.path.join(output_dir, "summary.json"), summary)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", required=True, help="Parquet with an id column and features")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--output", required=True)
    parser.add_argument("--labels-col", default=None, help="label column for precision@k by class")
    parser.add_argument("--id-col", default=None)
    parser.add_argument("--quick", action="store_true", help=f"first {QUICK_ITEMS} items only")
    parser.add_argument("--master", default=None, help="Spark master (default: spark-submit's, else local[*])")
    args = parser.parse_args(argv)

    from bigdl_py.spark_session import get_or_create_session

    spark = get_or_create_session(master=args.master, app_name="bigdl_py-similarity")
    summary = run_similarity(spark, args.embeddings, args.output, k=args.k, labels_col=args.labels_col,
                             quick=args.quick, id_col=args.id_col)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
