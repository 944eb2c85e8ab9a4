"""Optimizers on flat vectors vs torch.optim, the sharding contract, LARS, configs."""
import json
import math
import re

import numpy as np
import pytest
import torch

from bigdl_py.optim import LARS, SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop, optimizers_get

N = 23


def _problem(n=N, seed=0):
    """A random convex quadratic 0.5 w'Aw - b'w: gradient A w - b."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n)) / math.sqrt(n)
    A = (a @ a.T + 0.1 * np.eye(n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    w0 = rng.standard_normal(n).astype(np.float32)
    return A, b, w0


def _lr(base, t):
    # A varying lr checks that lr enters each formula where torch puts it.
    return base * (1.0 + 0.5 * math.sin(t))


def _check_vs_torch(ours, torch_cls, torch_kwargs, lr=0.01, steps=20):
    """Feed the same gradients (from torch's weights) to both; compare weights and state."""
    A, b, w0 = _problem()
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    topt = torch_cls([p], lr=lr, foreach=False, **torch_kwargs)
    w, state = w0.copy(), ours.init_state(N)
    for t in range(1, steps + 1):
        lr_t = _lr(lr, t)
        topt.param_groups[0]["lr"] = lr_t
        g = A @ p.detach().numpy() - b
        p.grad = torch.from_numpy(g.copy())
        topt.step()
        ours.update(w, g, state, lr_t, t)
    np.testing.assert_allclose(w, p.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(w, w0)
    for key, value in state.items():
        np.testing.assert_allclose(value, topt.state[p][key].numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


# One line per case: (our optimizer, torch class, torch kwargs, lr).
CASES = {
    "sgd": (SGD(), torch.optim.SGD, {}, 0.1),
    "sgd_momentum": (SGD(momentum=0.9), torch.optim.SGD, {"momentum": 0.9}, 0.05),
    "sgd_dampening": (SGD(momentum=0.9, dampening=0.5), torch.optim.SGD, {"momentum": 0.9, "dampening": 0.5}, 0.05),
    "sgd_nesterov": (SGD(momentum=0.9, nesterov=True), torch.optim.SGD, {"momentum": 0.9, "nesterov": True}, 0.05),
    "sgd_wd": (SGD(weight_decay=0.1), torch.optim.SGD, {"weight_decay": 0.1}, 0.1),
    "sgd_all": (SGD(momentum=0.8, nesterov=True, weight_decay=0.05), torch.optim.SGD,
                {"momentum": 0.8, "nesterov": True, "weight_decay": 0.05}, 0.05),
    "adam": (Adam(), torch.optim.Adam, {}, 0.01),
    "adam_wd": (Adam(weight_decay=0.1), torch.optim.Adam, {"weight_decay": 0.1}, 0.01),
    "adam_amsgrad": (Adam(amsgrad=True), torch.optim.Adam, {"amsgrad": True}, 0.01),
    "adam_betas_eps": (Adam(betas=(0.8, 0.99), eps=1e-3), torch.optim.Adam, {"betas": (0.8, 0.99), "eps": 1e-3}, 0.01),
    "adam_amsgrad_wd": (Adam(amsgrad=True, weight_decay=0.05), torch.optim.Adam,
                        {"amsgrad": True, "weight_decay": 0.05}, 0.01),
    "adamw": (AdamW(), torch.optim.AdamW, {}, 0.01),
    "adamw_wd": (AdamW(weight_decay=0.3), torch.optim.AdamW, {"weight_decay": 0.3}, 0.01),
    "adamw_amsgrad": (AdamW(amsgrad=True, betas=(0.5, 0.9)), torch.optim.AdamW,
                      {"amsgrad": True, "betas": (0.5, 0.9)}, 0.01),
    "adagrad": (Adagrad(), torch.optim.Adagrad, {}, 0.05),
    "adagrad_lr_decay": (Adagrad(lr_decay=0.1), torch.optim.Adagrad, {"lr_decay": 0.1}, 0.05),
    "adagrad_wd": (Adagrad(weight_decay=0.1), torch.optim.Adagrad, {"weight_decay": 0.1}, 0.05),
    "adagrad_init_eps": (Adagrad(initial_accumulator_value=0.5, eps=1e-3), torch.optim.Adagrad,
                         {"initial_accumulator_value": 0.5, "eps": 1e-3}, 0.05),
    "rmsprop": (RMSprop(), torch.optim.RMSprop, {}, 0.001),
    "rmsprop_alpha": (RMSprop(alpha=0.9, eps=1e-4), torch.optim.RMSprop, {"alpha": 0.9, "eps": 1e-4}, 0.001),
    "rmsprop_centered": (RMSprop(centered=True), torch.optim.RMSprop, {"centered": True}, 0.001),
    "rmsprop_momentum": (RMSprop(momentum=0.9), torch.optim.RMSprop, {"momentum": 0.9}, 0.001),
    "rmsprop_all": (RMSprop(momentum=0.5, centered=True, weight_decay=0.1), torch.optim.RMSprop,
                    {"momentum": 0.5, "centered": True, "weight_decay": 0.1}, 0.001),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_matches_torch(case):
    ours, torch_cls, kwargs, lr = CASES[case]
    _check_vs_torch(ours, torch_cls, kwargs, lr)


def _lars_reference(w, grads, lrs, bounds, momentum, wd, tc, eps, excluded=()):
    """LARS written from the formula per segment, float64; `excluded` segments: plain momentum SGD."""
    w = w.astype(np.float64)
    buf = np.zeros_like(w)
    for t, (g, lr) in enumerate(zip(grads, lrs)):
        g = g.astype(np.float64)
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            wn, gn = np.linalg.norm(w[a:b]), np.linalg.norm(g[a:b])
            local = tc * wn / (gn + wd * wn + eps) if wn > 0 and gn > 0 else 1.0
            d = g[a:b] if i in excluded else local * (g[a:b] + wd * w[a:b])
            buf[a:b] = d if t == 0 else momentum * buf[a:b] + d
            w[a:b] -= lr * buf[a:b]
    return w


def _grads(n, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(np.float32) for _ in range(steps)]


@pytest.mark.parametrize("momentum, wd, tc", [(0.9, 0.0, 0.001), (0.9, 1e-4, 0.02), (0.0, 5e-4, 0.01)])
def test_lars_matches_reference_per_segment(momentum, wd, tc):
    _, _, w0 = _problem()
    w0[9:14] = 0.0  # a segment with ||w|| = 0 keeps local_lr = 1
    bounds = np.array([0, 5, 9, 14, 14, N])  # includes an empty segment
    grads = _grads(N, 20)
    grads[0][14:] = 0.0  # ||g|| = 0 in one segment on the first step
    lrs = [_lr(1.0, t) for t in range(1, 21)]
    opt, w = LARS(momentum=momentum, weight_decay=wd, trust_coefficient=tc), w0.copy()
    state = opt.init_state(N)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        opt.update(w, g, state, lr, t, segments=bounds)
    ref = _lars_reference(w0, grads, lrs, bounds, momentum, wd, tc, 1e-8)
    np.testing.assert_allclose(w, ref, rtol=1e-5, atol=1e-6)


def test_lars_excluded_segments_skip_trust_ratio_and_weight_decay():
    _, _, w0 = _problem()
    bounds = np.array([0, 5, 9, 14, N])
    grads, lrs = _grads(N, 20), [_lr(1.0, t) for t in range(1, 21)]
    opt, w = LARS(momentum=0.9, weight_decay=1e-3, trust_coefficient=0.01, exclude=[[5, 9], [14, N]]), w0.copy()
    state = opt.init_state(N)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        opt.update(w, g, state, lr, t, segments=bounds)
    ref = _lars_reference(w0, grads, lrs, bounds, 0.9, 1e-3, 0.01, 1e-8, excluded={1, 3})
    np.testing.assert_allclose(w, ref, rtol=1e-5, atol=1e-6)
    assert LARS.from_config(opt.get_config()).config["exclude"] == [[5, 9], [14, N]]


@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_lars_exclude_lists_every_bias_and_batch_norm_parameter(name):
    from bigdl_py.nn import zoo
    from bigdl_py.optim import lars_exclude

    model = getattr(zoo, name)(seed=0)
    shapes = dict(model.named_parameters())
    vectors = [[lo, hi] for n, lo, hi in model.parameter_segments() if shapes[n].ndim == 1]
    assert lars_exclude(model) == vectors and vectors
    names = {n for n, lo, hi in model.parameter_segments() if [lo, hi] in vectors}
    assert all(n.endswith(".bias") or "bn" in n for n in names), names


@pytest.mark.parametrize("exclude", [[[3]], [[5, 2]], "all", [[-1, 4]]])
def test_lars_rejects_bad_exclude_ranges(exclude):
    with pytest.raises(ValueError, match="exclude: expected"):
        LARS(exclude=exclude)


def test_lars_trust_ratio_scales_each_segment_separately():
    w, g = np.ones(6, np.float32), np.ones(6, np.float32)
    g[3:] = 100.0
    opt = LARS(momentum=0.0, trust_coefficient=0.5)
    opt.update(w, g, opt.init_state(6), lr=1.0, step=1, segments=[0, 3, 6])
    # local_lr * g = 0.5 * ||w_seg|| * g / ||g_seg|| = 0.5 in both segments (eps aside)
    np.testing.assert_allclose(w, np.full(6, 0.5), rtol=1e-6)


def test_lars_without_trust_ratio_is_sgd():
    _, _, w0 = _problem()
    grads = _grads(N, 20)
    lars, sgd = LARS(momentum=0.9, weight_decay=0.01, trust_coefficient=0.0), SGD(momentum=0.9, weight_decay=0.01)
    w1, w2, s1, s2 = w0.copy(), w0.copy(), lars.init_state(N), sgd.init_state(N)
    for t, g in enumerate(grads, start=1):
        lars.update(w1, g, s1, 0.1, t, segments=[0, 4, N])
        sgd.update(w2, g, s2, 0.1, t)
    np.testing.assert_array_equal(w1, w2)


SHARDED = dict(CASES, lars=(LARS(weight_decay=1e-3, trust_coefficient=0.01), None, {}, 1.0),
               lars_nesterov=(LARS(nesterov=True, trust_coefficient=0.01), None, {}, 1.0),
               lars_exclude=(LARS(weight_decay=1e-3, trust_coefficient=0.01, exclude=[[4, 10], [17, N]]),
                             None, {}, 1.0))


@pytest.mark.parametrize("case", SHARDED, ids=list(SHARDED))
def test_two_slices_equal_whole_vector(case):
    """The sharding contract: update(w[:k]) + update(w[k:]) with state slices == update(w)."""
    opt, lr, k = SHARDED[case][0], SHARDED[case][3], 10
    segments = np.array([0, 4, k, 17, N])  # the shard boundary k is a layer boundary
    _, _, w0 = _problem()
    whole, parts = w0.copy(), w0.copy()
    s_whole, s_parts = opt.init_state(N), opt.init_state(N)
    for t, g in enumerate(_grads(N, 20), start=1):
        opt.update(whole, g, s_whole, _lr(lr, t), t, segments=segments)
        opt.update(parts[:k], g[:k], {key: v[:k] for key, v in s_parts.items()}, _lr(lr, t), t,
                   segments=segments[:3])
        opt.update(parts[k:], g[k:], {key: v[k:] for key, v in s_parts.items()}, _lr(lr, t), t,
                   segments=segments[2:] - k, offset=k)
        # An empty shard (more shards than values) is a no-op.
        opt.update(parts[k:k], g[k:k], {key: v[k:k] for key, v in s_parts.items()}, _lr(lr, t), t,
                   segments=[0, 0])
    np.testing.assert_array_equal(parts, whole)
    for key in s_whole:
        np.testing.assert_array_equal(s_parts[key], s_whole[key])


def test_lars_segment_split_over_shards_uses_summed_norms():
    """A layer cut by a shard boundary: shards add norm partials, then share the ratios."""
    opt, k = LARS(weight_decay=1e-3, trust_coefficient=0.01), 10
    segments = np.array([0, 6, 15, N])  # shard boundary k=10 falls inside [6, 15)
    left, right = np.array([0, 6, k]), np.array([0, 5, N - k])  # pieces of the same 3 segments
    _, _, w0 = _problem()
    whole, parts = w0.copy(), w0.copy()
    s_whole, s_parts = opt.init_state(N), opt.init_state(N)
    for t, g in enumerate(_grads(N, 20), start=1):
        opt.update(whole, g, s_whole, 1.0, t, segments=segments)
        wl, gl = opt.segment_norms_sq(parts[:k], g[:k], left)
        wr, gr = opt.segment_norms_sq(parts[k:], g[k:], right)
        w_sq = np.array([wl[0], wl[1] + wr[0], wr[1]])
        g_sq = np.array([gl[0], gl[1] + gr[0], gr[1]])
        ratios = opt.trust_ratios(w_sq, g_sq)
        opt.update(parts[:k], g[:k], {key: v[:k] for key, v in s_parts.items()}, 1.0, t,
                   segments=left, trust_ratios=ratios[:2])
        opt.update(parts[k:], g[k:], {key: v[k:] for key, v in s_parts.items()}, 1.0, t,
                   segments=right, trust_ratios=ratios[1:])
    np.testing.assert_allclose(parts, whole, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("make, message", [
    (lambda: SGD(momentum=-0.1), "Invalid momentum value: -0.1"),
    (lambda: SGD(weight_decay=-1), "Invalid weight_decay value: -1"),
    (lambda: SGD(nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (lambda: SGD(momentum=0.9, dampening=0.1, nesterov=True), "Nesterov momentum requires"),
    (lambda: SGD(momentum="fast"), "Invalid momentum value: 'fast'"),
    (lambda: Adam(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    (lambda: Adam(betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    (lambda: Adam(betas=0.9), "Invalid betas: expected a pair"),
    (lambda: Adam(eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (lambda: AdamW(weight_decay=float("nan")), "Invalid weight_decay value: nan"),
    (lambda: Adagrad(lr_decay=-0.5), "Invalid lr_decay value: -0.5"),
    (lambda: Adagrad(initial_accumulator_value=-1), "Invalid initial_accumulator_value value: -1"),
    (lambda: RMSprop(alpha=-0.9), "Invalid alpha value: -0.9"),
    (lambda: RMSprop(momentum=-1), "Invalid momentum value: -1"),
    (lambda: LARS(trust_coefficient=-0.001), "Invalid trust_coefficient value: -0.001"),
])
def test_bad_hyper_parameters_raise(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


@pytest.mark.parametrize("change, message", [
    (dict(lr=-0.1), "Invalid learning rate: -0.1"),
    (dict(lr=float("nan")), "Invalid learning rate: nan"),
    (dict(step=0), "Invalid step: expected an integer >= 1"),
    (dict(g=np.zeros(5, np.float32)), "g: expected shape (4,)"),
    (dict(g=np.zeros(4, np.float64)), "g: expected shape (4,) and dtype float32"),
    (dict(state={}), "state: expected keys ['momentum_buffer']"),
    (dict(state={"momentum_buffer": np.zeros(3, np.float32)}), "state['momentum_buffer']: expected shape (4,)"),
    (dict(segments=[0, 3]), "segments: expected non-decreasing integers from 0 to 4"),
])
def test_bad_update_arguments_raise(change, message):
    opt = LARS()
    args = dict(w=np.ones(4, np.float32), g=np.ones(4, np.float32), state=opt.init_state(4), lr=0.1, step=1,
                segments=None)
    args.update(change)
    with pytest.raises(ValueError, match=re.escape(message)):
        opt.update(**args)


@pytest.mark.parametrize("case", SHARDED, ids=list(SHARDED))
def test_config_round_trip_through_json(case):
    opt = SHARDED[case][0]
    config = json.loads(json.dumps(opt.get_config()))
    back = Optimizer.from_config(config)
    assert type(back) is type(opt) and back.get_config() == opt.get_config()
    assert optimizers_get(config).get_config() == opt.get_config()


def test_init_state_layout():
    assert SGD().init_state(5) == {}
    assert sorted(Adam(amsgrad=True).init_state(3)) == ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    assert sorted(RMSprop(momentum=0.9, centered=True).init_state(3)) == ["grad_avg", "momentum_buffer",
                                                                         "square_avg"]
    state = Adagrad(initial_accumulator_value=0.25).init_state(4)
    assert state["sum"].dtype == np.float32 and np.all(state["sum"] == 0.25)


def test_get_resolves_names_with_keyword_arguments():
    opt = optimizers_get("SGD", momentum=0.9, nesterov=True)
    assert isinstance(opt, SGD) and opt.get_config()["config"]["nesterov"] is True
    assert isinstance(optimizers_get("adamw"), AdamW)
    assert isinstance(optimizers_get("rms_prop"), RMSprop)
    same = Adam()
    assert optimizers_get(same) is same
    with pytest.raises(ValueError, match="unknown optimizer 'adamax'"):
        optimizers_get("adamax")


FROZEN_CASES = {
    "sgd-momentum-wd": SGD(momentum=0.9, weight_decay=0.1),
    "adam-wd": Adam(weight_decay=0.1),
    "adamw-amsgrad": AdamW(amsgrad=True),
    "rmsprop-centered": RMSprop(momentum=0.5, centered=True, weight_decay=0.1),
    "lars-excluded": LARS(momentum=0.9, weight_decay=0.01, exclude=[[20, 23]]),
}


@pytest.mark.parametrize("opt", FROZEN_CASES.values(), ids=FROZEN_CASES.keys())
@pytest.mark.parametrize("offset", [0, 5])
def test_update_trainable_keeps_frozen_bits_and_state_and_updates_the_rest_as_a_whole_step(opt, offset):
    from bigdl_py.optim.frozen import update_trainable

    # Parameters [0,4) [4,9) [9,15) [15,20) [20,23) of the flat vector; this slice starts at `offset`.
    segments = np.array([0, 4, 9, 15, 20, 23]) - offset
    segments = np.concatenate([[0], segments[segments > 0]])
    frozen = [[4, 9], [15, 20]]
    rng = np.random.default_rng(1)
    n = 23 - offset
    w0 = rng.standard_normal(n).astype(np.float32)
    whole_w, part_w = w0.copy(), w0.copy()
    whole_s, part_s = opt.init_state(n), opt.init_state(n)
    for step in range(1, 5):
        g = rng.standard_normal(n).astype(np.float32)
        opt.update(whole_w, g, whole_s, 0.1, step, segments, offset=offset)
        update_trainable(opt, part_w, g, part_s, 0.1, step, segments, offset=offset, frozen=frozen)
    mask = np.zeros(23, dtype=bool)
    for lo, hi in frozen:
        mask[lo:hi] = True
    mask = mask[offset:]
    assert part_w[mask].tobytes() == w0[mask].tobytes()
    fresh = opt.init_state(n)
    assert all(s[mask].tobytes() == fresh[k][mask].tobytes() for k, s in part_s.items())
    np.testing.assert_array_equal(part_w[~mask], whole_w[~mask])
    for k in whole_s:
        np.testing.assert_array_equal(part_s[k][~mask], whole_s[k][~mask])
