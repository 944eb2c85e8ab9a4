"""The ring backend's training task: one long-lived barrier task per rank.

The task rendezvouses with the other ranks (`BarrierTaskContext.allGather` of
"host:port" of a socket bound to its executor's own address), connects to the
driver, and then obeys the driver's commands until told to stop:

- ("init", source): load the full weights and the optimizer state of the slices
  this rank owns (from the initial weights or from a checkpoint);
- ("step", ...): forward/backward over this rank's training partitions' shares of
  the global batch (the PartitionedSampler, seeds and summed criterion of the
  block-manager path), reduce-scatter of the gradient, optimizer step on the owned
  slices, all-gather of the weights; replies with the iteration's statistics;
- ("validate",) / ("checkpoint", folder): metric partials over this rank's
  validation partitions / write the owned slices into the checkpoint folder;
- ("stop",): rank 0 returns the final weights.

Overlap: with the ring schedule the gradient is cut into buckets of whole layers.
For a Sequential model the last partition's backward runs layer by layer and hands
each finished bucket to a communication thread, which reduce-scatters it while the
earlier layers' backward continues. What overlaps is what releases the GIL: BLAS
GEMMs (linear layers, the GEMM of every convolution), numpy element-wise work and
socket I/O; the numba kernels (im2col/col2im, pooling, activations) are compiled
without nogil and hold it.
"""
import os
import queue
import threading
import time

from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.engine import ring_control as control
from bigdl_py.engine.replica import (apply_update, fresh_slices, gradient_step, metrics_step, replica,
                                     slices_from_checkpoint, warm_up)
from bigdl_py.sync import ring

BUCKET_BYTES = 64 * 1024  # smallest bucket: smaller ones pay the ring's R-1 latencies too often


def layer_buckets(model, min_bytes=BUCKET_BYTES):
    """Buckets of consecutive children of a Sequential, last layers first.

    Returns [(child indices, lo, hi)], or None when the model is not a Sequential
    (then the whole gradient is one bucket, sent after the backward pass).
    """
    from bigdl_py.nn.containers import Sequential

    if not isinstance(model, Sequential):
        return None
    spans = {}
    for name, lo, hi in model.parameter_segments():
        k = int(name.split(".", 1)[0])
        a, b = spans.get(k, (lo, hi))
        spans[k] = (min(a, lo), max(b, hi))
    buckets, members, lo, hi = [], [], None, None
    for k in reversed(range(len(model))):
        members.append(k)
        if k in spans:
            lo = spans[k][0]
            hi = spans[k][1] if hi is None else hi
        if lo is not None and (hi - lo) * 4 >= min_bytes:
            buckets.append((members, lo, hi))
            members, lo, hi = [], None, None
    if members and lo is not None:
        buckets.append((members, lo, hi))
    elif members and buckets:
        buckets[-1][0].extend(members)
    return buckets


def backward_by_layer(model, grad, on_layer_done):
    """Sequential.backward, calling on_layer_done(k) after child k (last child first).

    As Sequential.backward, children below the lowest trainable one are skipped (their
    gradients stay zero), and frozen children's parameter gradients are dropped.
    """
    inputs = model._inputs  # the container's cache of every child's input from forward
    needed = model._input_grads_needed()
    for k in reversed(range(len(model))):
        if needed[k] or model[k].has_trainable_parameters():
            grad = model._backward_child(model[k], inputs[k], grad, needed[k])
        on_layer_done(k)
    return grad


class _Comm:
    """A thread that reduce-scatters gradient buckets as they become ready."""

    def __init__(self, peers, grads, chunks):
        self.peers, self.grads, self.chunks = peers, grads, chunks
        self.todo = queue.Queue()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="ring-comm")
        self.thread.start()

    def _run(self):
        while True:
            item = self.todo.get()
            if item is None:
                return
            lo, hi, done = item
            try:
                if self.error is None:
                    ring.ring_reduce_scatter(self.peers, self.grads, self.chunks, lo, hi)
            except Exception as e:  # handed to the main thread, which raises it
                self.error = e
            done.set()

    def submit(self, lo, hi):
        done = threading.Event()
        self.todo.put((lo, hi, done))
        return done

    def close(self):
        self.todo.put(None)


class RingWorker:
    """One rank's model replica, owned slices and communication."""

    def __init__(self, cfg, rank, peers):
        from bigdl_py.optim.optimizers import optimizers_get

        self.cfg, self.rank, self.peers = cfg, rank, peers
        self.model, self.weights, self.grads, self.criterion = replica(
            cfg["run_id"], cfg["model_config"], cfg["criterion_config"], cfg["threads"])
        self.optim = optimizers_get(cfg["optim_config"])
        self.frozen = self.model.frozen_ranges()  # the replica's config says what is frozen
        self.partitions = cfg["partitions"][rank]
        self.chunk = cfg["chunks"][rank]
        self.owned = [s for s, r in enumerate(cfg["owners"]) if r == rank]
        self.use_ring = ring.uses_ring(self.weights.nbytes, peers.size)
        self.buckets = layer_buckets(self.model) if self.use_ring else None
        self.comm = _Comm(peers, self.grads, cfg["chunks"]) if self.use_ring else None
        self.state = {}

    def init(self, source):
        bounds, n = self.cfg["bounds"], self.weights.size
        if source is None:
            initial = self.cfg["initial"]
            self.weights[:] = initial
            make = fresh_slices(initial, self.cfg["optim_config"])
        else:
            self.weights[:] = ckpt.load_range(source, 0, n)[0]
            make = slices_from_checkpoint(source, self.cfg["optim_config"])
        self.state = {s: make(s, *bounds[s])[1] for s in self.owned}

    def step(self, cmd):
        cfg = self.cfg
        epoch, iteration = cmd["epoch"], cmd["iteration"]
        sampler = cfg["sampler"]
        self.grads.fill(0.0)
        loss_sum, count, data_s, compute_s = 0.0, 0, 0.0, 0.0
        pending = []

        def overlapped(xb, grad_out):
            pending.extend(self._backward_overlapped(xb, grad_out))

        for j, p in enumerate(self.partitions):
            last = j == len(self.partitions) - 1
            part = gradient_step(self.model, self.criterion, cfg["location"], cfg["feature_shape"], sampler,
                                 cfg["seed"], epoch, iteration, p,
                                 backward=overlapped if last and self.buckets is not None else None)
            loss_sum += part["loss_sum"]
            count += part["count"]
            data_s += part["data_s"]
            compute_s += part["compute_s"]
        t2 = time.perf_counter()
        self._reduce_scatter(pending)
        t3 = time.perf_counter()
        squares = self._update(cmd["lr"], cmd["step"], sampler_count(sampler, iteration), cmd["norms"])
        t4 = time.perf_counter()
        if self.use_ring:
            ring.ring_all_gather(self.peers, self.weights, cfg["chunks"])
        else:
            ring.butterfly_all_gather(self.peers, self.weights, cfg["chunks"])
        t5 = time.perf_counter()
        stats = dict(loss_sum=loss_sum, count=count, compute_s=compute_s, data_s=data_s,
                     sync_s=t5 - t2, update_s=t4 - t3)  # sync includes the update, as in the block-manager path
        if cmd["norms"]:
            stats["squares"] = squares
        return stats

    def _backward_overlapped(self, xb, grad_out):
        """Backward layer by layer; each finished bucket goes to the comm thread at once."""
        first_of = {members[-1]: (lo, hi) for members, lo, hi in self.buckets}
        pending = []

        def done(k):
            if k in first_of:
                pending.append(self.comm.submit(*first_of[k]))

        backward_by_layer(self.model, grad_out, done)
        return pending

    def _reduce_scatter(self, pending):
        if not self.use_ring:
            ring.butterfly_all_reduce(self.peers, self.grads)
            return
        if not pending:  # nothing overlapped (empty last share, or not a Sequential)
            pending = [self.comm.submit(lo, hi) for _, lo, hi in self.buckets or [(None, 0, self.grads.size)]]
        for event in pending:
            if not event.wait(self.peers.timeout):
                raise ring.CollectiveError(f"rank {self.rank}: the gradient reduce-scatter did not finish "
                                           f"in {self.peers.timeout:g} s")
        if self.comm.error is not None:
            raise self.comm.error

    def _update(self, lr, step, count, norms):
        """Update the owned slices; with `norms`, return their {parameter start: (weight, gradient squares)}."""
        cfg = self.cfg
        squares = {}
        for s in self.owned:
            lo, hi = cfg["bounds"][s]
            squares.update(apply_update(cfg["optim_config"], self.weights[lo:hi], self.grads[lo:hi], self.state[s],
                                        count, lr, step, cfg["boundaries"], lo, hi, cfg["clip_value"], norms,
                                        frozen=self.frozen) or {})
        return squares

    def validate(self):
        v = self.cfg["validation"]
        return [metrics_step(self.model, self.criterion, v["location"], v["feature_shape"], v["metrics"],
                             v["batch_size"], p) for p in self.partitions]

    def write_checkpoint(self, folder):
        for s in self.owned:
            lo, hi = self.cfg["bounds"][s]
            ckpt.write_slice(folder, s, lo, hi, self.weights[lo:hi], self.state[s])

    def close(self):
        if self.comm is not None:
            self.comm.close()


def sampler_count(sampler, iteration):
    """Samples in iteration i of an epoch (every rank knows it without communicating)."""
    return int(min(sampler.batch_size, sampler.total - iteration * sampler.batch_size))


def serve(cfg, rank, peers, sock, start_split):
    """Obey the driver's commands on `sock` until ("stop",); returns the final weights on rank 0.

    start_split: {phase: ms} of this task's start so far; the reply to "init" is that split with
    the replica's build and the initialisation added.
    """
    t0 = time.perf_counter()
    worker = RingWorker(cfg, rank, peers)
    start_split["replica"] = (time.perf_counter() - t0) * 1e3
    try:
        while True:
            cmd, _ = control.recv_msg(sock)
            op = cmd[0]
            if op == "init":
                t0 = time.perf_counter()
                worker.init(cmd[1])
                reply = dict(start_split, init=(time.perf_counter() - t0) * 1e3)
            elif op == "step":
                reply = worker.step(cmd[1])
            elif op == "validate":
                reply = worker.validate()
            elif op == "checkpoint":
                worker.write_checkpoint(cmd[1])
                reply = "written"
            elif op == "stop":
                return worker.weights.copy() if rank == 0 else None
            else:
                raise control.ControlError(f"rank {rank}: unknown command {op!r}")
            control.send_msg(sock, ("ok", reply))
    finally:
        worker.close()


# Failures a restart can cure: a lost peer, socket or driver connection, a timeout. Anything
# else (a bug, bad data) would fail the same way again.
TRANSIENT_ERRORS = (ring.CollectiveError, control.ControlError, OSError)


def failure_report(rank, error):
    """What a failed task tells the driver: its exception's type, and whether a restart can help."""
    return dict(rank=rank, type=type(error).__name__, transient=isinstance(error, TRANSIENT_ERRORS),
                message=f"rank {rank}: {type(error).__name__}: {error}")


def _report_failure(cfg, report):
    """Tell the driver on a connection of its own (the task may have failed before its hello)."""
    try:
        control.connect(cfg["driver"], cfg["token"], ("failed", cfg["launch"], report), cfg["timeout"]).close()
    except (control.ControlError, OSError):
        pass  # the driver is gone or unreachable: the stage failure alone will tell


def ring_task(cfg):
    """mapPartitions function of the barrier stage (one partition per rank).

    The task's input is its rank's data partitions (data.partitions.grouped_by_rank), cached
    on this executor before anything else (partitions whose files this machine's cache already
    holds are not read again), so training reads no file another host wrote. A task that fails
    reports its exception (failure_report) to the driver before it raises.
    """
    def run(records):
        from pyspark import BarrierTaskContext

        rank = BarrierTaskContext.get().partitionId()
        try:
            yield from _run_rank(cfg, records)
        except Exception as e:
            _report_failure(cfg, failure_report(rank, e))
            raise

    return run


def _run_rank(cfg, records):
    """One rank's task; what its start cost goes to the driver in the reply to "init" (ms per phase:
    from the launch to this function by the hosts' clocks, caching its input, the rendezvous,
    waiting for the kernels' warm-up, the driver connection, then the replica and its
    initialisation, serve())."""
    from pyspark import BarrierTaskContext

    from bigdl_py.data.partitions import store_grouped

    split = {"to_task": (time.time() - cfg["launched_at"]) * 1e3}
    t0 = time.perf_counter()
    # The kernels load while this task caches its input and waits at the rendezvous (Spark's
    # barrier answers once a second); joined before the replica runs anything.
    warming = threading.Thread(target=warm_up, args=(cfg["model_config"], cfg["criterion_config"],
                                                     cfg["feature_shape"], cfg["threads"]),
                               daemon=True, name="ring-warm-up")
    warming.start()
    ctx = BarrierTaskContext.get()
    rank = ctx.partitionId()
    store_grouped(records, cfg["datasets"], cfg["partitions"][rank])
    t1 = time.perf_counter()
    host = ctx.getTaskInfos()[rank].address.rsplit(":", 1)[0]
    server = ring.listen(host)
    try:
        gathered = [m.split(" ") for m in ctx.allGather(f"{host}:{server.getsockname()[1]} {ctx.taskAttemptId()}")]
    except Exception as e:  # another task of the stage failed or vanished
        server.close()
        raise ring.CollectiveError(f"rank {rank}: the barrier's allGather failed ({type(e).__name__}: {e})") from e
    t2 = time.perf_counter()
    warming.join()
    t3 = time.perf_counter()
    split.update(input=(t1 - t0) * 1e3, rendezvous=(t2 - t1) * 1e3, warm_up_wait=(t3 - t2) * 1e3)
    # Task attempt ids grow: their maximum names this attempt of the stage (Spark may retry it).
    attempt = max(int(tid) for _, tid in gathered)
    peers = ring.Peers(rank, [address for address, _ in gathered], server, cfg["timeout"], cfg["token"])
    sock = None
    try:
        sock = control.connect(cfg["driver"], cfg["token"], ("hello", cfg["launch"], attempt, rank, os.getpid()),
                               cfg["timeout"])
        sock.settimeout(cfg["idle_timeout"])
        split["hello"] = (time.perf_counter() - t3) * 1e3
        try:
            weights = serve(cfg, rank, peers, sock, split)
        except Exception as e:
            try:  # tell the session why, then fail the task (and so the barrier stage)
                control.send_msg(sock, ("error", failure_report(rank, e)))
            except control.ControlError:
                pass
            raise
    finally:
        peers.close()
        if sock is not None:
            sock.close()
    if weights is not None:
        yield weights
