"""Similarity benchmark: our exact all-pairs top-k vs MLlib's BucketedRandomProjectionLSH, same run.

On synthetic clustered embeddings (1M x 128-d by default, generated on the
executors) it prints one JSON line per system with items/s and wall time, LSH's
recall@k against our exact result, and the online recommender's p50/p99 query
latency for a 70k catalogue (plain Python, no Spark):

    python scripts/bench_similarity.py                  # 1M x 128, local[2]
    python scripts/bench_similarity.py --quick          # 20k x 128
    python scripts/bench_similarity.py --lsh-only       # the MLlib baseline alone, recall on 1,000 items
    python scripts/bench_similarity.py --items 200000 --memory-mb 128
    python scripts/bench_similarity.py --quality        # precision@10: MNIST 70k (LeNet-5), faces (EfficientNet)

--quality runs the whole pipeline (run_similarity) on real labels instead: MNIST's
70k digits embedded by a LeNet-5 trained one epoch with LocalOptimizer (or
--lenet-dir), and scikit-image's 200 face / non-face images embedded by
EfficientNet-Lite0; it writes the results and grid PNGs under --workdir.

Absolute times depend on the machine's load; the two systems run one after the
other in the same Spark session on the same Parquet input.
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np


def emit(record):
    print(json.dumps(record), flush=True)


def online_latency(items, dim, k, queries, seed=0):
    """p50/p99 ms of Recommender.recommend by id over a random (items, dim) catalogue."""
    from bigdl_py.pipelines.similarity.job import measure_latency
    from bigdl_py.pipelines.similarity.recommender import Recommender

    rng = np.random.default_rng(seed)
    rec = Recommender(np.arange(items), rng.standard_normal((items, dim)).astype(np.float32))
    return measure_latency(rec, rng.choice(items, size=queries, replace=False).tolist(), k)


def sampled_recall_at_k(approx, path, k, queries, seed=0):
    """LSH's recall@k over `queries` random items, against their exact top-k by the recommender
    (a brute-force scan of the catalogue in this process; same cosine, the item itself left out)."""
    from pyspark.sql import functions as F

    from bigdl_py.pipelines.similarity.recommender import Recommender

    rec = Recommender.build(path)
    sample = np.random.default_rng(seed).choice(len(rec.ids), size=min(queries, len(rec.ids)), replace=False)
    sample_ids = [rec.ids[i].item() for i in sample]
    found = {}
    for r in approx.where(F.col("item").isin(sample_ids)).select("item", "neighbour").collect():
        found.setdefault(r.item, set()).add(r.neighbour)
    hits = sum(len(found.get(q, set()) & {n for n, _ in rec.recommend(q, k)}) for q in sample_ids)
    return hits / (len(sample_ids) * k)


def quality(spark, work, lenet_dir, k):
    """precision@k (and the rest of run_similarity's summary) on MNIST 70k and on faces / non-faces."""
    from PIL import Image

    from bigdl_py.pipelines.similarity.job import run_similarity
    from bigdl_py.pipelines.similarity.lfw import lfw_catalogue
    from bigdl_py.pipelines.similarity.mnist import mnist_catalogue, mnist_images

    t = time.perf_counter()
    cat = mnist_catalogue(spark, os.path.join(work, "mnist"), classifier=lenet_dir)
    x, _ = mnist_images()
    s = run_similarity(spark, cat["embeddings"], os.path.join(work, "mnist", "similarity"), k=k, labels_col="label",
                       image_of=lambda i: x[i], model_dir=cat["model_dir"], preprocess=cat["preprocess"])
    emit(dict(bench="similarity", quality="mnist_lenet5", wall_s=round(time.perf_counter() - t, 1), **s))
    t = time.perf_counter()
    cat = lfw_catalogue(spark, os.path.join(work, "lfw"))
    s = run_similarity(spark, cat["embeddings"], os.path.join(work, "lfw", "similarity"), k=k, labels_col="label",
                       image_of=lambda p: np.asarray(Image.open(p)), lsh_options=dict(candidates=10))
    emit(dict(bench="similarity", quality="lfw_efficientnet_lite0", wall_s=round(time.perf_counter() - t, 1), **s))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="20k items")
    ap.add_argument("--memory-mb", type=int, default=256, help="per-task memory for our score blocks")
    ap.add_argument("--lsh-tables", type=int, default=4)
    # 25 at 1M items spilled > 37 GB of join shuffle and filled this machine's disk; 10 finishes.
    ap.add_argument("--lsh-candidates", type=int, default=10, help="bucket-mates per item per hash table")
    ap.add_argument("--skip-lsh", action="store_true")
    ap.add_argument("--lsh-only", action="store_true",
                    help="skip our all-pairs run; LSH's recall@k is then measured on --recall-queries sampled items "
                         "against their exact top-k from the plain-Python recommender")
    ap.add_argument("--recall-queries", type=int, default=1000)
    ap.add_argument("--latency-items", type=int, default=70_000)
    ap.add_argument("--latency-dim", type=int, default=84, help="84: LeNet-5's penultimate width")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="6g", help="MLlib's LSH join at 1M items ran out of 2g")
    ap.add_argument("--quality", action="store_true", help="precision@k on MNIST 70k and faces instead")
    ap.add_argument("--lenet-dir", default=None, help="--quality: a trained LeNet-5 (default: train one epoch)")
    ap.add_argument("--workdir", default=None, help="folder for the Parquet files (default: a temp folder)")
    args = ap.parse_args(argv)
    if args.quick:
        args.items = 20_000

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from bigdl_py.pipelines.similarity.allpairs import all_pairs_topk
    from bigdl_py.pipelines.similarity.lsh import lsh_topk, recall_at_k
    from bigdl_py.pipelines.similarity.synthetic import synthetic_embeddings
    from bigdl_py.spark_session import get_or_create_session

    work = args.workdir or tempfile.mkdtemp(prefix="bench_similarity-")
    if args.quality:
        spark = get_or_create_session(master=args.master, app_name="bench_similarity",
                                      conf={"spark.driver.memory": args.driver_memory})
        return quality(spark, work, args.lenet_dir, args.k)
    lat = online_latency(args.latency_items, args.latency_dim, args.k, 1000)
    emit(dict(bench="similarity", system="recommender_online", items=args.latency_items, dim=args.latency_dim,
              k=args.k, **lat))

    spark = get_or_create_session(master=args.master, app_name="bench_similarity",
                                  conf={"spark.driver.memory": args.driver_memory})
    t = time.perf_counter()
    path = os.path.join(work, "embeddings.parquet")
    synthetic_embeddings(spark, args.items, args.dim, path=path)
    emit(dict(bench="similarity", step="synthetic_embeddings", items=args.items, dim=args.dim,
              seconds=round(time.perf_counter() - t, 1), path=path))

    if not args.lsh_only:
        exact, ours = all_pairs_topk(spark, path, k=args.k, output_path=os.path.join(work, "topk.parquet"),
                                     memory_mb=args.memory_mb)
        emit(dict(bench="similarity", system="ours_exact", master=args.master, **ours))
    if args.skip_lsh:
        return
    try:
        approx, lsh = lsh_topk(spark, path, k=args.k, num_hash_tables=args.lsh_tables,
                               candidates=args.lsh_candidates, output_path=os.path.join(work, "lsh_topk.parquet"))
    except Exception as e:  # the baseline's own failure (e.g. its JVM heap) is a result to report, not hide
        emit(dict(bench="similarity", system="mllib_brp_lsh", master=args.master, items=args.items,
                  failed=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}", driver_memory=args.driver_memory))
        raise SystemExit(1)
    if args.lsh_only:
        recall = sampled_recall_at_k(approx, path, args.k, args.recall_queries)
        emit(dict(bench="similarity", system="mllib_brp_lsh", master=args.master, recall_at_k=round(recall, 4),
                  recall_queries=args.recall_queries, **lsh))
        return
    recall = recall_at_k(approx, exact)
    emit(dict(bench="similarity", system="mllib_brp_lsh", master=args.master, recall_at_k=round(recall, 4), **lsh))
    emit(dict(bench="similarity", summary=True, items=args.items, dim=args.dim, k=args.k,
              ours_items_per_s=ours["items_per_s"], lsh_items_per_s=lsh["items_per_s"],
              speed_ratio_ours_over_lsh=round(ours["items_per_s"] / lsh["items_per_s"], 3),
              lsh_recall_at_k=round(recall, 4), online_p50_ms=lat["p50_ms"], online_p99_ms=lat["p99_ms"]))


if __name__ == "__main__":
    main()
