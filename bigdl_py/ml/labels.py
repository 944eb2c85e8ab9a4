"""Driver-side checks that a label column suits an estimator, so that a bad column fails naming
itself before any Spark job instead of in the first training task."""


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
