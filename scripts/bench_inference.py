"""Inference benchmark in local[2]: our NNClassificationModel.transform vs torch CPU via predict_batch_udf.

Both score the same cached DataFrame (features array<float>) with the same weights
(torch's initial weights copied into our model), one thread per task, and write
the result to Spark's "noop" sink so every row is computed. Each system gets one
warm-up pass (Python workers, numba compilation) and then --repeats timed passes;
the best is reported. Prints one JSON line per model:

    {"model", "rows", "ours_rows_s", "torch_rows_s", "ratio"}   (ratio = ours / torch)

Cases: LeNet-5 over the 70k MNIST digits, MLP 64-256-128-64-2 over 2M random
tabular rows.

    python scripts/bench_inference.py [--quick] [--mnist-rows N] [--tabular-rows N]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_train  # noqa: E402
from bench_train import torch_model  # noqa: E402  (the same torch twins of our zoo models)
from pyspark import cloudpickle  # noqa: E402

cloudpickle.register_pickle_by_value(bench_train)  # executors cannot import a script

BATCH = 1024  # rows per forward call, both systems


def same_weights(name, ours, torch_net):
    """Copy torch's weights into our model (parameters pair up in order; conv layouts are converted)."""
    from bigdl_py.nn.torch_import import load_torch_state_dict

    state = dict(torch_net.state_dict())
    if name == "lenet5":
        # torch flattens (C, H, W), we flatten channels-last (H, W, C): permute the first FC's columns.
        state["7.weight"] = state["7.weight"].reshape(120, 16, 4, 4).permute(0, 2, 3, 1).reshape(120, 256)
    ours_names = [n for n, _ in ours.named_parameters()]
    return load_torch_state_dict(ours, state, dict(zip(state, ours_names)))


def torch_predict_fn(state, name, shape):
    """make_predict_fn for predict_batch_udf: the torch twin rebuilt in the worker, one thread."""
    def make():
        import torch

        torch.set_num_threads(1)
        net = torch_model(name)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        net.eval()

        def predict(x):
            with torch.inference_mode():
                return net(torch.from_numpy(x.reshape((len(x),) + shape))).numpy()
        return predict
    return make


def timed(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_case(spark, name, df, rows, ours, torch_net, torch_shape, repeats):
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import ArrayType, FloatType

    from bigdl_py.ml import NNClassificationModel

    width = int(np.prod(torch_shape))
    shape = [28, 28, 1] if name == "lenet5" else [width]
    model = NNClassificationModel(model=ours, featureShape=shape, inferenceBatchSize=BATCH)
    state = {k: v.detach().numpy().copy() for k, v in torch_net.state_dict().items()}
    udf = predict_batch_udf(torch_predict_fn(state, name, torch_shape), return_type=ArrayType(FloatType()),
                            batch_size=BATCH, input_tensor_shapes=[[width]])
    ours_job = lambda: model.transform(df).write.format("noop").mode("overwrite").save()  # noqa: E731
    torch_job = lambda: df.withColumn("logits", udf("features")).write.format("noop").mode(  # noqa: E731
        "overwrite").save()
    ours_job(), torch_job()  # warm-up
    # Alternate the systems so a load change on the machine hits both.
    ours_s, torch_s = float("inf"), float("inf")
    for _ in range(repeats):
        ours_s = min(ours_s, timed(ours_job, 1))
        torch_s = min(torch_s, timed(torch_job, 1))
    return dict(model=name, rows=rows, ours_rows_s=round(rows / ours_s, 1), torch_rows_s=round(rows / torch_s, 1),
                ratio=round(torch_s / ours_s, 3))


def check_same_outputs(ours, torch_net, x, torch_shape):
    """Both models give the same logits on a few rows (else the comparison is meaningless)."""
    import torch

    from bigdl_py.serving import predict

    with torch.inference_mode():
        want = torch_net(torch.from_numpy(x.reshape((len(x),) + torch_shape))).numpy()
    np.testing.assert_allclose(predict(ours, x.reshape((len(x),) + ours_input_shape(torch_shape))), want,
                               rtol=1e-4, atol=1e-4)


def ours_input_shape(torch_shape):
    return (28, 28, 1) if torch_shape == (1, 28, 28) else torch_shape


def mnist_df(spark, rows):
    from bigdl_py.data.mnist import load_mnist

    x_train, _, x_test, _ = load_mnist(flat=True)
    x = np.concatenate([x_train, x_test])[:rows]
    import pandas as pd

    pdf = pd.DataFrame({"features": list(x.astype(np.float32))})
    df = spark.createDataFrame(pdf, "features array<float>").repartition(2).cache()
    df.count()
    return df, x[:8]


def tabular_df(spark, rows, width=64):
    from pyspark.sql import functions as F

    df = (spark.range(rows, numPartitions=2)
          .select(F.array(*[F.randn(seed=j).cast("float") for j in range(width)]).alias("features")).cache())
    df.count()
    return df, np.random.default_rng(0).normal(size=(8, width)).astype(np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k MNIST rows, 100k tabular rows, 1 repeat")
    parser.add_argument("--mnist-rows", type=int, default=None)
    parser.add_argument("--tabular-rows", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--models", nargs="+", default=["lenet5", "mlp"], choices=["lenet5", "mlp"])
    args = parser.parse_args(argv)
    mnist_rows = args.mnist_rows or (10_000 if args.quick else 70_000)
    tabular_rows = args.tabular_rows or (100_000 if args.quick else 2_000_000)
    repeats = args.repeats or (1 if args.quick else 2)

    import torch

    from bigdl_py.nn import zoo
    from bigdl_py.spark_session import get_or_create_session

    spark = get_or_create_session(master="local[2]", app_name="bench_inference",
                                  conf={"spark.sql.execution.arrow.maxRecordsPerBatch": str(4 * BATCH),
                                        # 2M cached 64-float rows after the MNIST case: 1g ran out of heap
                                        "spark.driver.memory": "4g"})
    torch.manual_seed(0)
    results = []
    for name in args.models:
        torch_net = torch_model(name).eval()
        ours = same_weights(name, zoo.lenet5() if name == "lenet5" else zoo.mlp(), torch_net)
        if name == "lenet5":
            df, sample = mnist_df(spark, mnist_rows)
            rows, torch_shape = mnist_rows, (1, 28, 28)
        else:
            df, sample = tabular_df(spark, tabular_rows)
            rows, torch_shape = tabular_rows, (64,)
        check_same_outputs(ours, torch_net, sample, torch_shape)
        result = run_case(spark, name, df, min(rows, df.count()), ours, torch_net, torch_shape, repeats)
        print(json.dumps(result), flush=True)
        results.append(result)
        df.unpersist()
    return results


if __name__ == "__main__":
    main()
