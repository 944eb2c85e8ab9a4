"""NNEstimator / NNClassifier / NNRegressor: Spark ML Estimators training through DistriOptimizer.

`fit(df)` copies the model (the estimator's own model is never changed, so
CrossValidator can fit many copies), trains it with the distributed engine on the
DataFrame, and returns an NNModel / NNClassificationModel with the trained Module,
the feature shape it was trained on, `history` (one dict per epoch) and `skippedRows`
(bad rows dropped with badRows="skip": {"training": {cause: count}, "validation": {...}}).
"""
import uuid

import numpy as np
from pyspark.ml import Estimator

from bigdl_py import storage
from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.engine.distri import DistriOptimizer
from bigdl_py.engine.lineage import spark_wide_folder
from bigdl_py.ml.declared_params import NNParams, declare_params
from bigdl_py.ml.labels import check_class_labels, check_label_type, check_metrics_fit_labels
from bigdl_py.ml.model import NNClassificationModel, NNModel
from bigdl_py.ml.params import CLASSIFIER, INFERENCE, TRAINING
from bigdl_py.ml.persistence import NNPersistable
from bigdl_py.nn.criterions import BCEWithLogitsLoss, Criterion, CrossEntropyLoss, MSELoss, criterion_from_config
from bigdl_py.nn.containers import Sequential
from bigdl_py.nn.layers import Reshape
from bigdl_py.nn.module import Module
from bigdl_py.nn.registry import check_importable_by_name
from bigdl_py.optim.metrics import metrics_get
from bigdl_py.optim.optimizers import optimizers_get
from bigdl_py.optim.schedules import schedules_get
from bigdl_py.optim.triggers import EveryEpoch, MaxEpoch, NoImprovement
from bigdl_py.serving import model_from_bytes, model_output_shapes, model_to_bytes


def per_epoch(history):
    """One dict per epoch from the engine's per-iteration entries: mean loss plus the validation scores."""
    epochs = {}
    for entry in history:
        epochs.setdefault(entry["epoch"], []).append(entry)
    out = []
    for epoch in sorted(epochs):
        entries = epochs[epoch]
        row = dict(epoch=epoch + 1, loss=float(np.mean([e["loss"] for e in entries])),
                   iterations=len(entries))
        known = {"step", "epoch", "loss", "lr", "samples", "samples_s", "wall_ms", "compute_ms", "data_ms",
                 "sync_ms", "overhead_ms", "driver_bytes"}
        for key, value in entries[-1].items():
            if key not in known and isinstance(value, (int, float)):
                row[f"val_{key}"] = float(value)
        out.append(row)
    return out


def skipped_rows(opt):
    """{"training": {cause: count}, "validation": {...}}: the rows the conversion dropped, by cause."""
    data = dict(training=opt.data, validation=opt.validation and opt.validation["data"])
    return {name: {cause: n for cause, n in d.bad.items() if n} for name, d in data.items() if d is not None}


@declare_params(INFERENCE, TRAINING)
class NNEstimator(Estimator, NNParams, NNPersistable):
    """Train any bigdl_py Module with any criterion on a DataFrame.

    Args:
        model: the Module to train (copied at fit; never changed).
        criterion: a Criterion (required here; NNClassifier and NNRegressor have defaults).
        params: any of the Params below. featuresCol: a vector column (dense or sparse), an
            array<float|double> column, or a list of numeric columns. optimizer and schedule
            also take an Optimizer or Schedule (stored as its config). validationFraction, or
            setValidation(df). earlyStoppingMetric + earlyStoppingPatience: the best epoch's
            weights are kept. badRows applies to fit and transform.
        cacheRoot, lineageEvery, lineageRoot: as DistriOptimizer's cache_root, lineage_every
            and lineage_root. On a cluster, checkpointPath and lineageRoot name storage every
            host can write (a shared folder, hdfs:// or s3://); early stopping without a
            checkpointPath keeps its epoch checkpoints under the SparkContext checkpoint dir.
        tensorboardDir: a folder for TensorBoard event files of fit (loss, lr, time split,
            validation metrics, weight and gradient norms; see DistriOptimizer.set_tensorboard).
    """

    def __init__(self, *, model=None, criterion=None, **params):
        super().__init__()
        if model is not None and not isinstance(model, Module):
            raise ValueError(f"model: expected a bigdl_py Module, received {type(model).__name__}")
        if criterion is not None and not isinstance(criterion, Criterion):
            raise ValueError(f"criterion: expected a bigdl_py Criterion, received {type(criterion).__name__}")
        self._module, self._criterion = model, criterion
        self._validation_df = None
        self._set(**params)

    def getModel(self):
        """The (untrained) Module this estimator trains copies of."""
        return self._module

    def setValidation(self, df):
        """Validate on this DataFrame after every epoch (instead of validationFraction)."""
        self._validation_df = df
        return self

    # ---- what subclasses change -------------------------------------------------------
    _model_class = NNModel

    def _default_criterion(self, outputs_per_row):
        raise ValueError("NNEstimator: criterion is required (NNClassifier and NNRegressor have defaults)")

    def _check_labels(self, data, outputs_per_row):
        """Reject labels the validation metrics cannot take; subclasses add what their criterion needs."""
        if self._validation_df is not None or self.getValidationFraction() > 0:
            check_metrics_fit_labels(data, self.getLabelCol(), self.getValidationMetrics())

    # ---- fit ------------------------------------------------------------------------------
    def _fit(self, df):
        if self._module is None:
            raise ValueError(f"{type(self).__name__}: no model to train; pass model=<Module>")
        check_importable_by_name(self._module)
        for frame in (df, self._validation_df):
            if frame is not None:
                check_label_type(frame, self.getLabelCol())
        module = model_from_bytes(*model_to_bytes(self._module))  # train a copy
        train_df, val_df = self._split(df)
        # The default criterion depends on the model's output width, known once the data is converted.
        opt = DistriOptimizer(module, self._criterion, optimizers_get(self.getOptimizer()), train_df,
                              batch_size=self.getBatchSize(), end_trigger=self._end_trigger(),
                              learning_rate=self.getLearningRate(), schedule=self._schedule(),
                              seed=self.getSeed(), features_col=self.getFeaturesCol(),
                              label_col=self.getLabelCol(), feature_shape=self.getFeatureShape(),
                              num_partitions=self.getNumPartitions(), bad_rows=self.getBadRows(),
                              bad_rows_param="badRows", sync=self.getSync(), cache_root=self.getCacheRoot(),
                              lineage_every=self.getLineageEvery(), lineage_root=self.getLineageRoot())
        shape = opt.data.feature_shape
        outputs = model_output_shapes(module, np.zeros((1,) + tuple(shape), np.float32))
        per_row = int(np.prod(outputs[0]))
        if outputs[0] == (1,):
            # Labels come one per row (N,): train (N, 1) outputs as (N,) so element-wise losses match.
            opt.model = Sequential(module, Reshape([]))
        opt.criterion = self._criterion or self._default_criterion(per_row)
        self._check_labels(opt.data, per_row)
        opt.set_progress(self.getProgress())
        if self.getTensorboardDir() is not None:
            opt.set_tensorboard(self.getTensorboardDir())
        ckpt_root = self._configure_validation(opt, val_df)
        own_root = ckpt_root is not None and self.getCheckpointPath() is None  # a temporary folder of ours
        try:
            trained = opt.optimize()
            best = opt.early_stopping["best_epoch"] if opt.early_stopping else None
            if best is not None:
                trained = _checkpoint_of_epoch(ckpt_root, best)
        finally:
            if own_root:
                storage.remove_tree(ckpt_root)
        if trained is not module and outputs[0] == (1,):
            # Back from the training wrapper to the user's architecture ("0." is its slot in the wrapper).
            module.load_state_dict({k[2:]: v for k, v in trained.state_dict().items() if k.startswith("0.")})
        elif trained is not module:
            module = trained
        fitted = self._model_class(model=module)
        fitted.history = per_epoch(opt.history)
        fitted.skippedRows = skipped_rows(opt)
        for param in fitted.params:  # the inference settings travel with the model
            if self.hasParam(param.name):
                fitted._set(**{param.name: self.getOrDefault(param.name)})
        fitted._set(featureShape=list(shape))
        return fitted

    def _split(self, df):
        fraction = self.getValidationFraction()
        if self._validation_df is not None or fraction == 0:
            return df, self._validation_df
        train, val = df.randomSplit([1.0 - fraction, fraction], seed=self.getSeed())
        return train, val

    def _end_trigger(self):
        trigger = MaxEpoch(self.getMaxEpoch())
        patience = self.getEarlyStoppingPatience()
        return trigger | NoImprovement(patience) if patience is not None else trigger

    def _schedule(self):
        schedule = self.getSchedule()
        return None if schedule is None else schedules_get(schedule)

    def _configure_validation(self, opt, val_df):
        """Validation, early stopping and checkpoints; returns the checkpoint folder (or None)."""
        metric, patience = self.getEarlyStoppingMetric(), self.getEarlyStoppingPatience()
        if val_df is None and (metric or patience):
            raise ValueError("earlyStoppingMetric/earlyStoppingPatience need validation data: set "
                             "validationFraction > 0 or call setValidation(df)")
        if val_df is not None:
            metrics = [metrics_get(m) for m in self.getValidationMetrics()]
            opt.set_validation(val_df, metrics, trigger=EveryEpoch())
        root = self.getCheckpointPath()
        if metric or patience:
            opt.set_early_stopping(metric or self.getValidationMetrics()[0])
            # Every epoch: the best one is at most `patience` epochs old when training stops.
            root = root or spark_wide_folder(opt.sc, "bigdl_py-early-stopping", uuid.uuid4().hex,
                                             "early stopping: the epoch checkpoints", "checkpointPath or "
                                             "sc.setCheckpointDir(...) naming a shared folder, hdfs:// or s3:// URI")
            opt.set_checkpoint(root, EveryEpoch(), keep=(patience or self.getMaxEpoch()) + 1)
        elif root:
            opt.set_checkpoint(root, EveryEpoch())
        return root

    # ---- persistence ----------------------------------------------------------------------
    def _extra_metadata(self):
        return dict(criterion=None if self._criterion is None else self._criterion.get_config())

    @classmethod
    def _from_saved(cls, module, extra):
        config = extra.get("criterion")
        return cls(model=module, criterion=None if config is None else criterion_from_config(config))


def _checkpoint_of_epoch(root, epoch):
    """The model stored by the checkpoint written at the end of `epoch` (epochs counted from 1)."""
    for path in reversed(ckpt.list_checkpoints(root)):
        meta = ckpt.read_meta(path)
        if int(meta["epoch"]) == epoch and int(meta["iteration"]) == 0:
            return ckpt.load_model(path)
    raise ValueError(f"{root}: no checkpoint of epoch {epoch} (the best by the early-stopping metric)")


@declare_params(INFERENCE, CLASSIFIER, TRAINING)
class NNClassifier(NNEstimator):
    """An NNEstimator for 0-based class labels; fits an NNClassificationModel.

    Default criterion: CrossEntropyLoss on C >= 2 logits, BCEWithLogitsLoss for a
    model with one output (the logit of class 1).
    """

    _model_class = NNClassificationModel

    def _default_criterion(self, outputs_per_row):
        return BCEWithLogitsLoss() if outputs_per_row == 1 else CrossEntropyLoss()

    def _check_labels(self, data, outputs_per_row):
        check_class_labels(data, self.getLabelCol(), outputs_per_row)
        super()._check_labels(data, outputs_per_row)


@declare_params(INFERENCE, TRAINING, defaults=dict(validationMetrics=("loss", "mae")))
class NNRegressor(NNEstimator):
    """An NNEstimator with MSELoss by default; prediction is a double (one output) or a vector.

    validationMetrics default to ["loss", "mae"]: accuracy-type metrics need class labels.
    """

    def _default_criterion(self, outputs_per_row):
        return MSELoss()
