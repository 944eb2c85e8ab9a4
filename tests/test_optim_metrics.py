"""Mergeable validation metrics vs numpy/torch references; merge of halves == whole."""
import json
import math
import re

import numpy as np
import pytest
import torch

from bigdl_py.optim import (AUC, MAE, Loss, Metric, Precision, Recall, Top1Accuracy, Top5Accuracy, TopK,
                            metrics_get)

RNG = np.random.default_rng(0)
N = 101
LOGITS = RNG.standard_normal((N, 10)).astype(np.float32)
CLASSES = RNG.integers(0, 10, N)
SCORES = RNG.random(N).astype(np.float32)
BINARY = (RNG.random(N) < 0.4).astype(np.int64)
LOGITS2 = RNG.standard_normal((N, 2)).astype(np.float32)


def _torch_topk(logits, labels, k):
    top = torch.topk(torch.from_numpy(logits), k, dim=1).indices.numpy()
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def _auc_pairs(scores, labels):
    """AUC by counting all (positive, negative) pairs; ties count 1/2."""
    pos, neg = scores[labels == 1][:, None], scores[labels == 0][None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def _prf(pred, labels):
    tp = np.sum(pred & (labels == 1))
    return tp / np.sum(pred), tp / np.sum(labels == 1)


ROUNDED = np.round(SCORES * 4) / 4  # many ties

# One line per case: (metric, output, target, reference value).
CASES = {
    "top1": (Top1Accuracy(), LOGITS, CLASSES, _torch_topk(LOGITS, CLASSES, 1)),
    "top5": (Top5Accuracy(), LOGITS, CLASSES, _torch_topk(LOGITS, CLASSES, 5)),
    "top3_float_targets": (TopK(3), LOGITS, CLASSES.astype(np.float32)[:, None], _torch_topk(LOGITS, CLASSES, 3)),
    "top1_binary_scores": (Top1Accuracy(), SCORES[:, None], BINARY, float(np.mean((SCORES > 0.5) == BINARY))),
    "mae": (MAE(), LOGITS, LOGITS[::-1].copy(), float(np.mean(np.abs(LOGITS - LOGITS[::-1])))),
    "mae_column_vs_vector": (MAE(), SCORES[:, None], BINARY, float(np.mean(np.abs(SCORES - BINARY)))),
    "auc": (AUC(), SCORES, BINARY, _auc_pairs(SCORES, BINARY)),
    "auc_ties": (AUC(), ROUNDED, BINARY, _auc_pairs(ROUNDED, BINARY)),
    "auc_two_class_logits": (AUC(), LOGITS2, BINARY, _auc_pairs(LOGITS2[:, 1] - LOGITS2[:, 0], BINARY)),
    "precision": (Precision(), SCORES, BINARY, _prf(SCORES > 0.5, BINARY)[0]),
    "recall": (Recall(), SCORES[:, None], BINARY, _prf(SCORES > 0.5, BINARY)[1]),
    "precision_two_class": (Precision(), LOGITS2, BINARY, _prf(LOGITS2[:, 1] > LOGITS2[:, 0], BINARY)[0]),
    "recall_two_class": (Recall(), LOGITS2, BINARY, _prf(LOGITS2[:, 1] > LOGITS2[:, 0], BINARY)[1]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_matches_reference(case):
    metric, output, target, expected = CASES[case]
    assert expected > 0  # a degenerate reference would hide mistakes
    assert metric.result(metric.batch(output, target)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_merged_partitions_equal_whole(case):
    """Uneven and empty partitions, merged in a tree, give the whole-data value."""
    metric, output, target, _ = CASES[case]
    cuts = [0, 7, 7, 60, N]
    parts = [metric.batch(output[a:b], target[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    merged = metric.merge(metric.merge(parts[0], parts[1]), metric.merge(parts[2], metric.empty()))
    merged = metric.merge(merged, parts[3])
    assert metric.result(merged) == pytest.approx(metric.result(metric.batch(output, target)), rel=1e-12)


def test_loss_is_mean_of_per_sample_losses():
    losses = RNG.random(N)
    metric = Loss()
    merged = metric.merge(metric.batch(losses[:30].sum(), 30), metric.batch(losses[30:].sum(), N - 30))
    assert metric.result(merged) == pytest.approx(losses.mean(), rel=1e-12)


def test_top1_counts_ties_in_favour_of_the_target():
    out = np.array([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]], np.float32)
    assert TopK(1).batch(out, np.array([1, 0])) == (1, 2)


@pytest.mark.parametrize("metric", [TopK(1), MAE(), AUC(), Precision(), Recall(), Loss()],
                         ids=lambda m: m.name)
def test_undefined_results_are_nan(metric):
    assert math.isnan(metric.result(metric.empty()))


def test_auc_with_one_class_is_nan():
    assert math.isnan(AUC()(SCORES, np.ones(N)))


@pytest.mark.parametrize("metric", [TopK(1), TopK(5), Loss(), MAE(), AUC(), Precision(), Recall()],
                         ids=lambda m: m.name)
def test_config_round_trip_through_json(metric):
    back = Metric.from_config(json.loads(json.dumps(metric.get_config())))
    assert type(back) is type(metric) and back.get_config() == metric.get_config() and back.name == metric.name


def test_get_resolves_names():
    assert metrics_get("top5").name == "Top5Accuracy"
    assert metrics_get("Top1Accuracy").name == "Top1Accuracy"
    assert isinstance(metrics_get("auc"), AUC)
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        metrics_get("f1")


@pytest.mark.parametrize("call, message", [
    (lambda: TopK(0), "Invalid k: expected an integer >= 1, received 0"),
    (lambda: TopK(5).batch(LOGITS[:, :3], CLASSES), "output: expected shape (N, C) with C >= 5"),
    (lambda: TopK(1).batch(LOGITS, CLASSES[:5]), "target: expected class labels of shape (101,)"),
    (lambda: TopK(1).batch(LOGITS, CLASSES + 5), "target: expected integer labels in [0, 10)"),
    (lambda: TopK(1).batch(LOGITS, CLASSES + 0.5), "target: expected integer labels in [0, 10)"),
    (lambda: TopK(1).batch(CLASSES, CLASSES), "output: expected a float numpy array, received int64"),
    (lambda: AUC().batch(LOGITS, BINARY), "output: expected binary scores (N,), (N, 1) or two-class outputs"),
    (lambda: Recall().batch(SCORES, BINARY * 2), "target: expected integer labels in [0, 2)"),
    (lambda: MAE().batch(LOGITS, CLASSES), "target: expected shape (101, 10) (as output)"),
    (lambda: Loss().batch(1.0, -1), "count: expected the number of samples"),
])
def test_bad_arguments_raise(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


@pytest.mark.parametrize("name, needs", [("top1", True), ("top5", True), ("auc", True), ("precision", True),
                                         ("recall", True), ("loss", False), ("mae", False)])
def test_metrics_say_whether_they_need_class_labels(name, needs):
    assert metrics_get(name).needs_class_labels is needs
