"""Waiting for a word of memory to change, in compiled code: without the GIL and without
letting the core go idle.

Waking a thread that sleeps on a lock costs 25-100 us on a 2-vCPU VM (the idle vCPU
halts and needs an interrupt), more than many kernel tasks take. A thread that spins a
little while on a flag word instead sees it change within a microsecond; OpenMP runtimes
do the same (their threads spin for a while after each parallel region).
"""
import platform
import time

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def _load_acquire(typingctx, word):
    """word[0] of an int64 array, as an atomic acquire load: never hoisted out of a loop."""
    if not (isinstance(word, types.Array) and word.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        ptr = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(word), codegen


@intrinsic
def _cycles(typingctx):
    """The CPU's cycle counter (llvm.readcyclecounter; 0 where the target has none)."""
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])

    return types.int64(), codegen


@intrinsic
def _pause(typingctx):
    """x86's PAUSE (a spin-wait hint that spares the core's sibling), elsewhere nothing."""
    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@njit(nogil=True, cache=True)
def wait_while(word, value, budget_cycles, then_cycles):
    """Spin while word[0] == value, for at most budget_cycles (not at all for 0: where
    the target has no cycle counter); True if it changed, after spinning then_cycles more
    (still without the GIL)."""
    start = _cycles()
    while _load_acquire(word) == value:
        if budget_cycles <= 0 or _cycles() - start > budget_cycles:
            return False
        _pause()
    changed = _cycles()
    while _cycles() - changed < then_cycles:
        _pause()
    return True


@njit(nogil=True, cache=True)
def wait_until(word, value, budget_cycles):
    """Spin until word[0] == value, for at most budget_cycles; True if it got there."""
    start = _cycles()
    while _load_acquire(word) != value:
        if budget_cycles <= 0 or _cycles() - start > budget_cycles:
            return False
        _pause()
    return True


def cycles_per_second():
    """The cycle counter's rate, measured over ~2 ms (0 where there is no counter)."""
    c0, t0 = _now_cycles(), time.perf_counter()
    while time.perf_counter() - t0 < 0.002:
        pass
    return max(0.0, (_now_cycles() - c0) / (time.perf_counter() - t0))


@njit(cache=True)
def _now_cycles():
    return _cycles()

