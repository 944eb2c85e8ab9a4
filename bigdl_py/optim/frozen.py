"""Optimizer steps that leave frozen parameters untouched.

A model's frozen parameters are [start, stop) ranges of its flat vector
(`Module.frozen_ranges()`). The update runs only on the trainable runs between
them, with the matching slices of the optimizer state, so weight decay, momentum
and Adam's moments never touch a frozen value, and its state stays as it was.
Every optimizer is elementwise per parameter (LARS: per segment), and frozen
ranges are whole parameters, so the trainable values get exactly the update they
would get from a step on the whole vector.
"""
import numpy as np


def trainable_runs(lo, hi, frozen):
    """[(a, b)] of the parts of [lo, hi) outside the frozen ranges, relative to lo."""
    runs, start = [], lo
    for f_lo, f_hi in sorted(frozen):
        if f_hi <= start or f_lo >= hi:
            continue
        if f_lo > start:
            runs.append((start - lo, f_lo - lo))
        start = max(start, f_hi)
    if start < hi:
        runs.append((start - lo, hi - lo))
    return runs


def update_trainable(optimizer, w, g, state, lr, step, segments, offset=0, frozen=()):
    """optimizer.update(w, g, state, lr, step, segments, offset) on the trainable runs only.

    Args:
        state: {name: array of len(w)}, as every optimizer's init_state makes it; each
            trainable run gets the matching slices.
        segments: int array [0, b1, ..., len(w)] of parameter boundaries in this slice.
        offset: where the slice starts in the flat vector.
        frozen: [start, stop) ranges of the flat vector to leave unchanged (whole parameters).
    """
    if not len(frozen):
        optimizer.update(w, g, state, lr, step, segments, offset=offset)
        return
    segments = np.asarray(segments)
    for a, b in trainable_runs(offset, offset + len(w), frozen):
        inner = segments[(segments > a) & (segments < b)] - a
        run_segments = np.concatenate([[0], inner, [b - a]]).astype(segments.dtype)
        optimizer.update(w[a:b], g[a:b], {k: s[a:b] for k, s in state.items()}, lr, step, run_segments,
                         offset=offset + a)
