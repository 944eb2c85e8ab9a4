"""Quality of recommendations: precision@k by class, and a PNG grid of queries and their neighbours."""
import io

import numpy as np

from bigdl_py.atomic import atomic_write_bytes


def precision_at_k(topk, labels, labels_col, id_col="id"):
    """Mean fraction of each item's neighbours that share its label, overall and per class (in Spark).

    Args:
        topk: DataFrame(item, neighbour, score, rank).
        labels: DataFrame with id_col and labels_col.
    Returns:
        dict(overall=float, by_class={label: float}, items=int).
    """
    from pyspark.sql import functions as F

    lab = labels.select(F.col(id_col).alias("item"), F.col(labels_col).alias("label"))
    nb = labels.select(F.col(id_col).alias("neighbour"), F.col(labels_col).alias("nb_label"))
    per_item = (topk.join(lab, "item").join(nb, "neighbour")
                .groupBy("item", "label").agg(F.avg((F.col("label") == F.col("nb_label")).cast("double"))
                                              .alias("p")))
    rows = per_item.groupBy("label").agg(F.avg("p").alias("p"), F.count("*").alias("n")).collect()
    if not rows:
        raise ValueError("precision_at_k: no item of the top-k result has a label")
    items = sum(r.n for r in rows)
    return dict(overall=sum(r.p * r.n for r in rows) / items, items=int(items),
                by_class={str(r.label): round(r.p, 4) for r in sorted(rows, key=lambda r: r.label)})


def plot_grid(path, queries, image_of, title=None, label_of=None):
    """PNG grid: one row per query, its image then its neighbours' (with scores), written atomically.

    Args:
        queries: [(query_id, [(neighbour_id, score), ...]), ...].
        image_of: id -> image array (H, W) or (H, W, 3).
        label_of: optional id -> label shown under each image.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 1 + max(len(nbs) for _, nbs in queries)
    fig, axes = plt.subplots(len(queries), cols, figsize=(1.3 * cols, 1.5 * len(queries)), squeeze=False)
    for row, (qid, nbs) in enumerate(queries):
        cells = [(qid, None)] + list(nbs)
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col >= len(cells):
                continue
            item, score = cells[col]
            img = np.asarray(image_of(item))
            ax.imshow(img.squeeze(), cmap="gray" if img.squeeze().ndim == 2 else None)
            text = "query" if score is None else f"{score:.3f}"
            if label_of is not None:
                text += f" [{label_of(item)}]"
            ax.set_title(text, fontsize=7, color="blue" if score is None else "black")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
