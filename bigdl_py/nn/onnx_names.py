"""Unique names for ONNX export (value and node names) and import (layer names)."""


def unique_name(base, taken):
    """`base`, or `base_1`, `base_2`, ... : the first not in the set `taken`, which gets it."""
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name
