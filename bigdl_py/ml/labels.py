"""Driver-side checks that a label column suits an estimator and its validation metrics.

The column's type is checked before any Spark job; whole-number labels after the
conversion job counted the labels with a fraction (PartitionedData.fractional_labels).
Either way a bad column fails on the driver naming itself, not in the first training task.
"""
from bigdl_py.optim.metrics import metrics_get


def check_label_type(df, label_col):
    """ValueError naming the column when its type is not numeric or boolean (a missing column is left to the
    conversion, which lists the DataFrame's columns)."""
    from pyspark.sql.types import BooleanType, NumericType

    if label_col not in df.columns:
        return
    data_type = df.schema[label_col].dataType
    if not isinstance(data_type, (NumericType, BooleanType)):
        raise ValueError(f"label column {label_col!r}: expected a numeric column, found {data_type.simpleString()}; "
                         f"index string labels with pyspark.ml.feature.StringIndexer")


def check_class_labels(data, label_col, outputs_per_row):
    """Whole numbers in [0, classes - 1] for a model with `outputs_per_row` outputs (one output: two classes)."""
    classes, label_range = max(outputs_per_row, 2), data.label_range
    if data.fractional_labels:
        raise ValueError(f"label column {label_col!r}: expected whole-number class labels (0, 1, ...), found "
                         f"{data.fractional_labels} value(s) with a fraction; index labels with "
                         f"pyspark.ml.feature.StringIndexer, or use NNRegressor for continuous targets")
    if label_range is not None and (label_range[0] < 0 or label_range[1] > classes - 1):
        raise ValueError(f"label column {label_col!r}: expected 0-based class labels in "
                         f"[0, {classes - 1}] for a model with {outputs_per_row} output(s), found values in "
                         f"[{label_range[0]:g}, {label_range[1]:g}]")


def check_metrics_fit_labels(data, label_col, metric_names):
    """ValueError naming the metrics that need class labels when some labels have a fraction."""
    if not data.fractional_labels:
        return
    needy = [name for name in metric_names if metrics_get(name).needs_class_labels]
    if needy:
        raise ValueError(f"validationMetrics {needy}: need whole-number class labels, but label column "
                         f"{label_col!r} has {data.fractional_labels} value(s) with a fraction; validate a "
                         f"regression with 'loss' or 'mae'")
