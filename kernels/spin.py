"""Waiting for a word of memory to change, in compiled code: without the GIL and without
letting the core go idle.

Waking a thread that sleeps on a lock costs 25-100 us on a 2-vCPU VM (the idle vCPU
halts and needs an interrupt), more than many kernel tasks take. A thread that spins a
little while on a flag word instead sees it change within a microsecond; OpenMP runtimes
do the same (their threads spin for a while after each parallel region).
"""
import os
import platform
import time

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_POSIX = os.name == "posix"
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
def _relax(typingctx):
    """One turn of a spin loop: sched_yield(2) where the OS has it (POSIX), so that another
    runnable thread on this CPU runs now, else x86's PAUSE, else nothing.

    A scheduler may put a woken pool thread on its waker's CPU while the other idles
    (this VM's kernel packs threads after a few ms asleep), and the two then share one
    CPU for milliseconds: a spinner that only PAUSEs holds it for a whole time slice,
    while its partner has the work. LeNet-5's conv2 forward + backward on two threads,
    called 15 ms after the last call: 4.3-5.2 ms spinning with PAUSE, 2.0-2.4 ms yielding
    (1.7-2.1 back to back either way; 2.3 on one thread); alone on its CPU sched_yield
    returns at once (two 50 us tasks took 80-99 us on two threads, 90-105 with PAUSE).
    """
    def codegen(context, builder, signature, args):
        if _POSIX:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
            builder.call(fn, [])
        elif _X86:
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
        _relax()
    changed = _cycles()
    while _cycles() - changed < then_cycles:
        _relax()
    return True


@njit(nogil=True, cache=True)
def wait_until(word, value, budget_cycles):
    """Spin until word[0] == value, for at most budget_cycles; True if it got there."""
    start = _cycles()
    while _load_acquire(word) != value:
        if budget_cycles <= 0 or _cycles() - start > budget_cycles:
            return False
        _relax()
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

