"""Online recommendations in a plain Python process (no Spark): exact cosine top-k over the catalogue.

A recommender directory holds:
- `recommender.json`: format, version, id column, sizes, the image preprocessing;
- `embeddings.npz`: `vectors` (n, dim) float32 unit rows and `ids` (int64 or str),
  read with allow_pickle=False;
- `model/` (optional): the embedding network in our saved-model format, for
  queries by image (its output rows are the embeddings).
"""
import json
import os
import zipfile

import numpy as np

from bigdl_py.atomic import atomic_directory, write_json, write_npz
from bigdl_py.nn.io import load_model, save_model
from bigdl_py.pipelines.similarity.blocks import ID_COLUMNS, l2_normalize, unit_vectors_from_arrow

FORMAT = "bigdl_py.recommender"
VERSION = 1
CONFIG_FILE, VECTORS_FILE, MODEL_DIR = "recommender.json", "embeddings.npz", "model"


class Recommender:
    """The k most similar catalogue items to an item id or an image.

    Args:
        ids: (n,) int64 or str ids, unique.
        vectors: (n, dim) embeddings (normalised here).
        model: optional Module mapping a batch of preprocessed images to embeddings.
        preprocess: dict(input_shape=[H, W, C], mean=float, std=float); images are
            scaled to [0, 1] (uint8 / 255), resized, then (x - mean) / std.

    Example:
        rec = Recommender.load("output/similarity/recommender")
        rec.recommend(42, k=10)            # [(id, score), ...], best first
        rec.recommend("query.png", k=10)   # by image (needs the embedding model)
    """

    def __init__(self, ids, vectors, model=None, preprocess=None):
        ids = np.asarray(ids)
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise ValueError(f"Recommender: expected vectors (n, dim) for {len(ids)} ids, received shape "
                             f"{vectors.shape}")
        if ids.dtype.kind not in "iuU":
            raise ValueError(f"Recommender: ids must be integers or strings, received dtype {ids.dtype}")
        self.ids = ids
        self.vectors = l2_normalize(vectors)
        self.index = {v: i for i, v in enumerate(ids.tolist())}
        if len(self.index) != len(ids):
            raise ValueError(f"Recommender: ids must be unique, found {len(ids) - len(self.index)} repeated")
        if model is not None and preprocess is None:
            raise ValueError("Recommender: an embedding model needs "
                             "preprocess=dict(input_shape=..., mean=..., std=...)")
        self.model = model.eval() if model is not None else None
        self.preprocess = preprocess

    @classmethod
    def build(cls, embeddings_path, id_col=None, features_col="features", model_dir=None, preprocess=None):
        """From an embeddings Parquet file or folder (read with pyarrow, no Spark)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = pq.ParquetDataset(embeddings_path).schema.names
        id_col = id_col or next((c for c in ID_COLUMNS if c in names), None)
        if id_col not in names or features_col not in names:
            raise ValueError(f"{embeddings_path}: expected an id column ({id_col or ' / '.join(ID_COLUMNS)}) and "
                             f"{features_col!r}, found columns {names}")
        table = pq.read_table(embeddings_path, columns=[id_col, features_col]).combine_chunks()
        first = table.column(features_col).drop_null()
        if len(first) == 0:
            raise ValueError(f"{embeddings_path}: features column {features_col!r} has no non-null rows")
        dim = len(first[0])
        vectors, _, bad = unit_vectors_from_arrow(table.to_batches()[0], features_col, dim)
        ids = table.column(id_col)
        bad["null_id"] = ids.null_count
        if any(bad.values()):
            described = ", ".join(f"{v} with {c.replace('_', ' ')}" for c, v in bad.items() if v)
            raise ValueError(f"{embeddings_path}: {sum(bad.values())} bad row(s) of {table.num_rows} ({described}); "
                             f"expected an id and {dim} finite values, not all zero, per row")
        text = pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)
        ids = np.asarray(ids.to_pylist()) if text else ids.to_numpy()
        model = load_model(model_dir) if model_dir is not None else None
        return cls(ids, vectors, model, preprocess)

    def save(self, path):
        """Write the recommender directory (replaced atomically)."""
        with atomic_directory(path) as tmp:
            write_npz(tmp, VECTORS_FILE, dict(vectors=self.vectors, ids=self.ids))
            if self.model is not None:
                save_model(self.model, os.path.join(tmp, MODEL_DIR))
            write_json(tmp, CONFIG_FILE, dict(format=FORMAT, version=VERSION, items=len(self.ids),
                                              dim=int(self.vectors.shape[1]), preprocess=self.preprocess))

    @classmethod
    def load(cls, path):
        """Read a directory written by `save` (ValueError naming the file if it is not one)."""
        file = os.path.join(path, CONFIG_FILE)
        if not os.path.isfile(file):
            raise ValueError(f"{file}: missing; {path} is not a recommender directory")
        with open(file, "rb") as f:
            try:
                config = json.loads(f.read().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ValueError(f"{file}: not valid JSON ({e})") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT or config.get("version") != VERSION:
            raise ValueError(f"{file}: expected format {FORMAT!r} version {VERSION}, found "
                             f"{config.get('format') if isinstance(config, dict) else config!r}")
        arrays = _read_arrays(os.path.join(path, VECTORS_FILE))
        if set(arrays) != {"vectors", "ids"} or arrays["vectors"].shape != (config["items"], config["dim"]):
            raise ValueError(f"{os.path.join(path, VECTORS_FILE)}: expected 'vectors' ({config['items']}, "
                             f"{config['dim']}) and 'ids', found {sorted(arrays)} with vectors "
                             f"{arrays.get('vectors', np.zeros(0)).shape}")
        model_dir = os.path.join(path, MODEL_DIR)
        model = load_model(model_dir) if os.path.isdir(model_dir) else None
        return cls(arrays["ids"], arrays["vectors"], model, config.get("preprocess"))

    def recommend(self, query, k=10):
        """The k most similar items as [(id, score), ...], best first.

        `query` is a catalogue id (the item itself is left out), an image array
        (H, W) or (H, W, C), or the path of an image file.
        """
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k: expected a positive integer, received {k!r}")
        skip = None
        key = query.item() if isinstance(query, np.generic) else query
        if isinstance(key, (int, str)) and key in self.index:
            skip = self.index[key]
            q = self.vectors[skip]
        elif isinstance(query, (str, os.PathLike)) and not os.path.isfile(query):
            raise ValueError(f"query {query!r}: not a catalogue id and no such image file")
        elif isinstance(query, (str, os.PathLike, np.ndarray)):
            q = self.embed_image(query)
        else:
            raise ValueError(f"query: {query!r} is not a catalogue id, an image array or an image file")
        scores = self.vectors @ q
        if skip is not None:
            scores[skip] = -np.inf
        k = min(k, len(scores) - (skip is not None))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))][:k]
        return [(self.ids[i].item(), float(scores[i])) for i in top]

    def embed_image(self, image):
        """Unit embedding of one image (array or file path) through the embedding model."""
        if self.model is None:
            raise ValueError("this recommender has no embedding model: queries must be catalogue ids")
        x = preprocess_image(image, self.preprocess)
        return l2_normalize(self.model.infer(x[None]).reshape(1, -1))[0]


def _read_arrays(file):
    """{name: array} of an .npz read with allow_pickle=False (ids may be strings, never objects)."""
    if not os.path.isfile(file):
        raise ValueError(f"{file}: missing")
    try:
        with np.load(file, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{file}: corrupt or unsafe embeddings file ({type(e).__name__}: {e})") from None


def preprocess_image(image, preprocess):
    """An image (path or array) -> float32 (H, W, C) as the embedding model expects."""
    from PIL import Image

    h, w, c = preprocess["input_shape"]
    if isinstance(image, (str, os.PathLike)):
        if not os.path.isfile(image):
            raise ValueError(f"{image}: no such image file")
        with Image.open(image) as im:
            image = np.asarray(im.convert("L" if c == 1 else "RGB"))
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"image: expected (H, W) or (H, W, 1|3), received shape {a.shape}")
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    if a.shape[2] != c:
        a = a.mean(axis=2, keepdims=True) if c == 1 else np.repeat(a, 3, axis=2)
    if a.shape[:2] != (h, w):
        resized = [np.asarray(Image.fromarray(a[:, :, i]).resize((w, h), Image.BILINEAR)) for i in range(c)]
        a = np.stack(resized, axis=2)
    return ((a - np.float32(preprocess["mean"])) / np.float32(preprocess["std"])).astype(np.float32)
