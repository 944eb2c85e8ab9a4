"""The rule-based score a credit desk would start from: points for a few red flags.

Thresholds are the usual underwriting ones (loan-to-value, debt-to-income, grade,
recent inquiries, past delinquency), written down once and not fitted to the data,
so the rules-vs-network comparison mirrors a rule system against a trained model.
Missing or unparseable values earn no points.
"""
from pyspark.sql import functions as F

# dataset -> [(SQL condition on the raw columns, points)]
RULES = {
    "credit_data": [
        ("Records = 'yes'", 2),
        ("Job IN ('partime', 'others')", 1),
        ("try_divide(try_cast(Amount AS DOUBLE), try_cast(Price AS DOUBLE)) > 0.9", 1),
        ("try_cast(Seniority AS DOUBLE) < 2", 1),
        ("try_cast(Income AS DOUBLE) < 100", 1),
    ],
    "loans": [
        ("grade IN ('D', 'E', 'F', 'G')", 2),
        ("grade = 'C'", 1),
        ("try_cast(debt_to_income AS DOUBLE) > 35", 1),
        ("try_cast(inquiries_last_12m AS DOUBLE) >= 4", 1),
        ("try_cast(delinq_2y AS DOUBLE) > 0 OR try_cast(num_historical_failed_to_pay AS DOUBLE) > 0", 1),
        ("try_cast(account_never_delinq_percent AS DOUBLE) < 90", 1),
    ],
}


def rule_score_column(dataset):
    """A Column: the sum of the points of the rules a row trips (0 when none)."""
    if dataset not in RULES:
        raise ValueError(f"rules: expected a dataset in {sorted(RULES)}, received {dataset!r}")
    return sum(F.when(F.expr(cond), F.lit(points)).otherwise(F.lit(0)) for cond, points in RULES[dataset])
