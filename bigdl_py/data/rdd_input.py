"""Training data from an RDD of numpy samples: `(features, label)` pairs.

Each partition's samples are packed into Arrow batches on the executor and go
through the same conversion and checks as a DataFrame's (`partitions.py`), so
both inputs end as the same keyed chunks, cached partitions and tokens, and the same
bad-row policy applies. Nothing is collected to the driver except one sample (its shape).
"""
import numpy as np

from bigdl_py.data.partitions import POLICIES, convert_partition, materialize_keyed, new_location

_ROWS_PER_BATCH = 4096


def _sample_pair(sample, index):
    if not (isinstance(sample, (tuple, list)) and len(sample) == 2):
        raise ValueError(f"RDD sample {index}: expected a (features, label) pair, received {type(sample).__name__}")
    return sample


def _arrow_batches(samples):
    """(features, label) pairs -> Arrow batches with `features` list<float> and `label` double."""
    import pyarrow as pa

    def batch(xs, ys):
        lengths = np.array([len(x) for x in xs], dtype=np.int32)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        values = pa.array(np.concatenate(xs) if xs else np.zeros(0, np.float32), pa.float32())
        return pa.RecordBatch.from_arrays([pa.ListArray.from_arrays(pa.array(offsets), values),
                                           pa.array(ys, pa.float64())], names=["features", "label"])

    xs, ys = [], []
    for i, sample in enumerate(samples):
        features, label = _sample_pair(sample, i)
        xs.append(np.asarray(features, dtype=np.float32).ravel())
        ys.append(None if label is None else float(label))
        if len(xs) == _ROWS_PER_BATCH:
            yield batch(xs, ys)
            xs, ys = [], []
    if xs:
        yield batch(xs, ys)


def materialize_rdd(rdd, feature_shape=None, num_partitions=None, cache_root=None, policy="error",
                    key_partitions=None, policy_param="policy", pins=None):
    """Convert an RDD of `(features ndarray, label)` into per-partition numpy arrays on the executors.

    Args:
        rdd: RDD whose elements are (features array-like, numeric label) pairs.
        feature_shape: per-sample shape (default: the first sample's shape).
        num_partitions, cache_root, policy, key_partitions, policy_param, pins: as `materialize_dataframe`.

    Returns:
        PartitionedData.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy: expected one of {POLICIES}, received {policy!r}")
    first = rdd.take(1)
    if not first:
        raise ValueError("RDD input: no samples")
    first_features = np.asarray(_sample_pair(first[0], 0)[0])
    shape = tuple(feature_shape) if feature_shape is not None else first_features.shape
    width = int(np.prod(shape))
    if first_features.size != width:
        raise ValueError(f"feature_shape {shape} holds {width} values, but the first RDD sample has "
                         f"{first_features.size} (shape {first_features.shape})")
    P = num_partitions or rdd.context.defaultParallelism
    if rdd.getNumPartitions() != P:
        rdd = rdd.repartition(P)
    location = new_location(cache_root)
    chunks = rdd.mapPartitions(
        lambda samples: convert_partition(_arrow_batches(samples), width, policy, True, location.run_id))
    return materialize_keyed(chunks, max(key_partitions or P, P), location, width, shape, policy, True,
                             "RDD samples (features, label)", policy_param, pins)
