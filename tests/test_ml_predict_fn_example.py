"""The make_predict_fn docstring example runs as written on local[2]."""
import inspect
import textwrap

import numpy as np
import pytest

from bigdl_py.ml import make_predict_fn
from bigdl_py.nn import zoo
from bigdl_py.serving import predict

pytestmark = pytest.mark.spark


def docstring_example(fn):
    """The indented code block after the docstring's "Example" line."""
    lines = inspect.getdoc(fn).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Example")) + 1
    while not lines[start].startswith("    "):
        start += 1
    block = []
    for line in lines[start:]:
        if line and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block))


def test_make_predict_fn_docstring_example_runs(spark):
    x = np.random.default_rng(3).random((6, 784)).astype(np.float32)
    lenet5 = zoo.lenet5(seed=0)
    df = spark.createDataFrame([(i, x[i].tolist()) for i in range(6)], "id long, features array<float>")
    namespace = dict(make_predict_fn=make_predict_fn, lenet5=lenet5, df=df)
    exec(docstring_example(make_predict_fn), namespace)
    got = np.array([r.logits for r in namespace["scored"].orderBy("id").collect()])
    np.testing.assert_allclose(got, predict(lenet5, x.reshape(6, 28, 28, 1)), rtol=1e-5, atol=1e-5)
