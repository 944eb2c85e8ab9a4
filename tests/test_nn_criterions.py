"""Criterions: value and gradient vs torch.nn.functional and finite differences; label checks; configs."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bigdl_py.nn.criterions import (BCEWithLogitsLoss, ClassNLLCriterion, CrossEntropyLoss, L1Loss, MSELoss,
                                    NLLLoss, SmoothL1Loss, criterion_from_config, get_criterion)
from bigdl_py.testing import numeric_grad

N, C = 5, 4
rng = np.random.default_rng(0)
LOGITS = rng.standard_normal((N, C)) * 2
LABELS = np.array([0, 3, 1, 3, 2])
REGRESS_TARGET = rng.standard_normal((N, C))
PROBS = rng.random((N, C))
CLASS_W = [0.5, 2.0, 1.0, 3.0]


def log_softmax(z):
    return z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)


# (criterion, torch function of (output, target, reduction), output, target)
CASES = {
    "ce": (lambda r: CrossEntropyLoss(reduction=r), lambda o, t, r: F.cross_entropy(o, t, reduction=r),
           LOGITS, LABELS),
    "ce_weight": (lambda r: CrossEntropyLoss(weight=CLASS_W, reduction=r),
                  lambda o, t, r: F.cross_entropy(o, t, weight=torch.tensor(CLASS_W, dtype=o.dtype), reduction=r),
                  LOGITS, LABELS),
    "ce_float_labels": (lambda r: CrossEntropyLoss(reduction=r), lambda o, t, r: F.cross_entropy(o, t, reduction=r),
                        LOGITS, LABELS.astype(np.float32)),
    "nll": (lambda r: ClassNLLCriterion(reduction=r), lambda o, t, r: F.nll_loss(o, t, reduction=r),
            log_softmax(LOGITS), LABELS),
    "nll_weight": (lambda r: NLLLoss(weight=CLASS_W, reduction=r),
                   lambda o, t, r: F.nll_loss(o, t, weight=torch.tensor(CLASS_W, dtype=o.dtype), reduction=r),
                   log_softmax(LOGITS), LABELS),
    "bce": (lambda r: BCEWithLogitsLoss(reduction=r),
            lambda o, t, r: F.binary_cross_entropy_with_logits(o, t, reduction=r), LOGITS, PROBS),
    "bce_weights": (lambda r: BCEWithLogitsLoss(weight=[1.0, 0.5, 2.0, 1.5], pos_weight=[3.0, 1.0, 0.2, 9.0],
                                                reduction=r),
                    lambda o, t, r: F.binary_cross_entropy_with_logits(
                        o, t, weight=torch.tensor([1.0, 0.5, 2.0, 1.5], dtype=o.dtype),
                        pos_weight=torch.tensor([3.0, 1.0, 0.2, 9.0], dtype=o.dtype), reduction=r),
                    LOGITS, (PROBS > 0.5).astype(np.float64)),
    "mse": (lambda r: MSELoss(reduction=r), lambda o, t, r: F.mse_loss(o, t, reduction=r), LOGITS, REGRESS_TARGET),
    "l1": (lambda r: L1Loss(reduction=r), lambda o, t, r: F.l1_loss(o, t, reduction=r), LOGITS, REGRESS_TARGET),
    "smooth_l1": (lambda r: SmoothL1Loss(beta=1.0, reduction=r),
                  lambda o, t, r: F.smooth_l1_loss(o, t, beta=1.0, reduction=r), LOGITS, REGRESS_TARGET),
    "smooth_l1_beta": (lambda r: SmoothL1Loss(beta=0.3, reduction=r),
                       lambda o, t, r: F.smooth_l1_loss(o, t, beta=0.3, reduction=r), LOGITS, REGRESS_TARGET),
    "smooth_l1_beta0": (lambda r: SmoothL1Loss(beta=0.0, reduction=r),
                        lambda o, t, r: F.smooth_l1_loss(o, t, beta=0.0, reduction=r), LOGITS, REGRESS_TARGET),
}


def torch_target(t, is_class):
    return torch.from_numpy(np.asarray(t, dtype=np.int64 if is_class else np.float64))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_value_and_gradient_match_torch(case, reduction, dtype):
    make, ref, output, target = CASES[case]
    crit = make(reduction)
    out = output.astype(dtype)
    ot = torch.from_numpy(out.astype(np.float64)).requires_grad_()
    tt = torch_target(target, case.startswith(("ce", "nll")))
    loss_t = ref(ot, tt, reduction)
    loss_t.backward()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert crit.forward(out, target) == pytest.approx(loss_t.item(), rel=tol, abs=tol)
    grad = crit.backward(out, target)
    assert grad.dtype == dtype and grad.shape == out.shape
    np.testing.assert_allclose(grad, ot.grad.numpy(), rtol=tol * 10, atol=tol)
    loss, both_grad = crit.forward_backward(out, target)  # the engines' one-pass call gives the same
    assert loss == crit.forward(out, target)
    np.testing.assert_array_equal(both_grad, grad)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_matches_finite_differences(case, reduction):
    make, _, output, target = CASES[case]
    crit = make(reduction)
    out = output.astype(np.float64)
    if case.startswith("l1") or case.startswith("smooth_l1_beta0"):
        out = out + 0.05 * np.sign(out - REGRESS_TARGET)  # keep |d| away from the kink at 0
    np.testing.assert_allclose(crit.backward(out, target),
                               numeric_grad(lambda o: crit.forward(o, target), out, eps=1e-6),
                               rtol=1e-5, atol=1e-8)


def test_cross_entropy_accepts_sequences_and_label_columns():
    crit = CrossEntropyLoss()
    out = rng.standard_normal((2, 3, C))
    labels = rng.integers(0, C, (2, 3))
    want = F.cross_entropy(torch.from_numpy(out).permute(0, 2, 1), torch.from_numpy(labels)).item()
    assert crit.forward(out, labels) == pytest.approx(want, rel=1e-12)
    assert crit.forward(LOGITS, LABELS[:, None]) == pytest.approx(crit.forward(LOGITS, LABELS), rel=1e-12)


@pytest.mark.parametrize("crit", [CrossEntropyLoss(), ClassNLLCriterion()])
def test_out_of_range_labels_name_value_classes_and_count(crit):
    bad = np.array([0, 7, 1, -1, 7], dtype=np.float32)
    with pytest.raises(ValueError) as e:
        crit.forward(LOGITS, bad)
    msg = str(e.value)
    assert "label -1" in msg and f"{C} classes" in msg and "3 of 5 targets are bad" in msg and "7" in msg


def test_fractional_labels_are_refused():
    with pytest.raises(ValueError, match="whole numbers.*0.5"):
        CrossEntropyLoss().forward(LOGITS, np.array([0, 0.5, 1, 1, 2]))


def test_bce_refuses_targets_outside_unit_interval_and_mismatched_shapes():
    bad = PROBS.copy()
    bad[1, 2] = 2.0
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\].*2.0.*1 of 20"):
        BCEWithLogitsLoss().forward(LOGITS, bad)
    with pytest.raises(ValueError, match="target of the output's shape"):
        BCEWithLogitsLoss().forward(LOGITS[:, :1], PROBS[:, 0])


def test_bce_is_stable_for_huge_logits():
    out = np.array([[-200.0, 200.0, 0.0]], dtype=np.float32)
    target = np.array([[1.0, 0.0, 1.0]], dtype=np.float32)
    crit = BCEWithLogitsLoss(pos_weight=[2.0, 2.0, 2.0], reduction="sum")
    want = F.binary_cross_entropy_with_logits(torch.from_numpy(out), torch.from_numpy(target),
                                              pos_weight=torch.full((3,), 2.0), reduction="sum")
    assert crit.forward(out, target) == pytest.approx(want.item(), rel=1e-6)
    assert np.all(np.isfinite(crit.backward(out, target)))


def test_empty_batch_sums_to_zero():
    crit = CrossEntropyLoss(reduction="sum")
    out = np.zeros((0, C), np.float32)
    assert crit.forward(out, np.zeros(0, np.int64)) == 0.0
    assert crit.backward(out, np.zeros(0, np.int64)).shape == (0, C)


@pytest.mark.parametrize("crit", [CrossEntropyLoss(weight=CLASS_W, reduction="sum"), NLLLoss(),
                                  BCEWithLogitsLoss(pos_weight=[1.0, 2.0]), MSELoss(), L1Loss(),
                                  SmoothL1Loss(beta=0.5)])
def test_config_round_trip(crit):
    config = json.loads(json.dumps(crit.get_config()))
    rebuilt = criterion_from_config(config)
    assert type(rebuilt) is type(crit) and rebuilt.get_config() == crit.get_config()


def test_registry_resolves_names_and_aliases():
    assert isinstance(get_criterion("cross_entropy", reduction="sum"), CrossEntropyLoss)
    assert isinstance(get_criterion("NLLLoss"), ClassNLLCriterion)
    assert isinstance(get_criterion("smooth_l1", beta=2.0), SmoothL1Loss)
    with pytest.raises(ValueError, match="unknown criterion 'hinge'"):
        get_criterion("hinge")


@pytest.mark.parametrize("make, message", [
    (lambda: MSELoss(reduction="avg"), "reduction 'mean' or 'sum'"),
    (lambda: CrossEntropyLoss(weight=[1.0, -1.0]), "non-negative"),
    (lambda: SmoothL1Loss(beta=-1), "beta >= 0"),
])
def test_bad_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_class_weight_count_must_match_classes():
    with pytest.raises(ValueError, match="3 entries but output has 4 classes"):
        CrossEntropyLoss(weight=[1, 1, 1]).forward(LOGITS, LABELS)
