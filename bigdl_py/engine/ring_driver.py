"""Driver side of the ring backend: barrier-stage launches, the command loop, recovery.

Training runs as ONE barrier stage of R long-lived tasks (ring_worker.py). RingDriver is
a TrainingBackend: the training loop of every engine (BaseOptimizer.run_training) keeps
the bookkeeping (log, validation trigger, end trigger, checkpoints) and asks it for each
step; it sends every task the step's command (step, epoch, iteration, learning rate
from the schedule) and receives the few statistics back. Validation runs on the
executors inside the stage: each rank evaluates its validation partitions with the
current weights and returns mergeable metric partials.

Recovery: every `lineage_every` steps (and at every user checkpoint) the slice
owners write a checkpoint, the recovery point. If a task, an executor or the stage
fails, the driver takes a fresh set of tasks (Spark's own retry of the barrier
stage, or a new launch after a backoff when Spark gives up), initialises them from
the recovery point, replays the iterations since, silently, and sends the command that
failed again: the loop sees each step once, and the replayed steps give the same bits
(fixed sampling, seeds and reduction orders). After `max_restarts` failures a
TrainingError says what failed.
"""
import hmac
import queue
import secrets
import socket
import threading
import time

from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.engine import ring_control as control
from bigdl_py.engine.backend import StepResult, TrainingBackend
from bigdl_py.engine.base import TrainingError, metric_results
from bigdl_py.engine.ring_worker import ring_task
from bigdl_py.engine.tensorboard import merged_squares

TOKEN_BYTES = 32
# Failures a restart can cure: a peer, the driver link or an executor went away.
REPORT_GRACE_S = 1.0  # how long a failed stage waits for its tasks' failure reports


class TaskFailure(RuntimeError):
    """The tasks of the current launch failed or vanished (recoverable by a restart)."""


class _Session:
    """The R control connections of one set of tasks, used in lock step."""

    def __init__(self, key, conns):
        self.key, self.conns = key, conns
        self.received = 0

    def all(self, cmd):
        """Send cmd to every rank; return the replies in rank order."""
        try:
            for conn in self.conns:
                control.send_msg(conn, cmd)
            replies = []
            for rank, conn in enumerate(self.conns):
                (kind, value), nbytes = control.recv_msg(conn)
                self.received += nbytes
                if kind != "ok":  # a failure_report: the task's exception type decided `transient`
                    if value["transient"]:
                        raise TaskFailure(value["message"])
                    raise TrainingError(f"ring training task {value['message']}")
                replies.append(value)
            return replies
        except control.ControlError as e:
            raise TaskFailure(f"a training task stopped answering during {cmd[0]!r} ({e})") from None

    def tell(self, cmd):
        for conn in self.conns:
            control.send_msg(conn, cmd)

    def close(self):
        for conn in self.conns:
            try:
                conn.close()
            except OSError:
                pass


class RingDriver(TrainingBackend):
    """The ring backend of one training: launches, sessions, the commands of each step, recovery.

    Args:
        opt: the DistriOptimizer (Spark context, model, data, triggers).
        options: the Ring config (engine/sync_config.py): timeouts and max_restarts.
        cfg: the task configuration shared by every launch (ring_worker.RingWorker).
        ranks: R, the number of barrier tasks.
        inputs: RDD of R partitions, the data each rank caches before it trains
            (data.partitions.grouped_by_rank); every launch's barrier stage reads it.
    """

    def __init__(self, opt, options, cfg, ranks, inputs):
        self.opt, self.sc, self.ranks, self.inputs = opt, opt.sc, ranks, inputs
        self.timeout, self.idle_timeout, self.max_restarts = options.timeout, options.idle_timeout, options.max_restarts
        self.token = secrets.token_bytes(TOKEN_BYTES)
        host = self.sc.getConf().get("spark.driver.host", "127.0.0.1")
        self.server = socket.create_server((host, 0))
        self.cfg = dict(cfg, driver=f"{host}:{self.server.getsockname()[1]}", token=self.token,
                        timeout=self.timeout, idle_timeout=self.idle_timeout)
        self.events = queue.Queue()
        self.failures = {}  # launch -> failure reports its tasks sent
        self.launch, self.restarts, self.launched_at = 0, 0, None
        self.group = f"bigdl_py-ring-{secrets.token_hex(4)}"
        self.stopping = False
        self.session, self.source, self.replay = None, None, []  # replay: step commands since the source
        self.received = 0  # bytes of the replies to the last command
        self.norms = []
        self.stopped = False  # the stage ended normally
        threading.Thread(target=self._accept, daemon=True, name="ring-accept").start()

    # ---- connections and launches -------------------------------------------------
    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._greet, args=(conn,), daemon=True).start()

    def _greet(self, conn):
        """Check the token before reading anything else, then queue the hello."""
        conn.settimeout(self.timeout)
        try:
            if not hmac.compare_digest(control.recv_exact(conn, TOKEN_BYTES), self.token):
                raise control.ControlError("wrong token")
            message, _ = control.recv_msg(conn)
            if message[0] == "failed":  # ("failed", launch, failure_report)
                self.failures.setdefault(message[1], []).append(message[2])
                conn.close()
                return
            kind, launch, attempt, rank, pid = message
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.events.put(("hello", (launch, attempt), rank, conn, pid))
        except (control.ControlError, ValueError, TypeError, OSError):
            conn.close()

    def _start_launch(self):
        self.launch += 1
        self.launched_at = time.time()  # wall clock: the tasks compare their start with it
        cfg, launch, inputs = dict(self.cfg, launch=self.launch, launched_at=self.launched_at), self.launch, self.inputs
        group = f"{self.group}-{launch}"

        def run():
            self.sc.setJobGroup(group, f"bigdl_py ring training (launch {launch})", interruptOnCancel=True)
            try:
                result = inputs.barrier().mapPartitions(ring_task(cfg)).collect()
                self.events.put(("stage_done", launch, result, None))
            except Exception as e:  # reported to the driver loop, which decides
                self.events.put(("stage_done", launch, None, e))

        threading.Thread(target=run, daemon=True, name=f"ring-stage-{launch}").start()

    def _session(self, after):
        """The next complete set of R connected tasks of the current launch (newer than `after`)."""
        pending = {}
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                event = self.events.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self._failed(TaskFailure(f"the {self.ranks} ring tasks did not all connect within "
                                         f"{self.timeout:g} s"))
                deadline = time.monotonic() + self.timeout
                continue
            if event[0] == "hello":
                _, key, rank, conn, pid = event
                if key[0] != self.launch or (after is not None and key <= after):
                    conn.close()
                    continue
                pending.setdefault(key, {})[rank] = (conn, pid)
                if len(pending[key]) == self.ranks:
                    for other, conns in pending.items():
                        if other != key:
                            for c, _ in conns.values():
                                c.close()
                    conn_list = [pending[key][r][0] for r in range(self.ranks)]
                    for c in conn_list:  # tasks time out on their peers themselves; a dead one closes its socket
                        c.settimeout(self.idle_timeout)
                    self.opt.ring_task_pids = [pending[key][r][1] for r in range(self.ranks)]
                    return _Session(key, conn_list)
            elif event[0] == "stage_done" and event[1] == self.launch:
                error = event[3] or TaskFailure("the training stage ended before training did")
                fatal = self._fatal_report(self.launch)
                if fatal is not None:  # a bug or bad data: a restart would fail the same way
                    raise TrainingError(f"the ring training stage failed: {fatal['message']}")
                self._failed(TaskFailure(f"the barrier stage failed: {_short(error)}"))
                deadline = time.monotonic() + self.timeout

    def _fatal_report(self, launch):
        """The first failure report of `launch` that a restart cannot cure, or None.

        A failed task reports before it raises, so its report normally precedes the stage's
        failure; it is awaited for REPORT_GRACE_S when none has come. A stage that failed with
        no report lost a task to Spark itself (executor lost, task killed, no slots): transient.
        """
        deadline = time.monotonic() + REPORT_GRACE_S
        while not self.failures.get(launch) and time.monotonic() < deadline:
            time.sleep(0.05)
        return next((r for r in self.failures.get(launch, []) if not r["transient"]), None)

    def _count(self, error):
        """Count a failure; give up with a clear error after max_restarts."""
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise TrainingError(f"ring training failed {self.restarts} times (max_restarts={self.max_restarts}); "
                                f"last failure: {error}")

    def _failed(self, error):
        """The launch is dead (Spark gave up on it, or it never connected): launch anew after a backoff."""
        self._count(error)
        self.sc.cancelJobGroup(f"{self.group}-{self.launch}")
        time.sleep(min(2 ** (self.restarts - 1), 8))
        self._wait_for_slots()
        self._start_launch()

    def _wait_for_slots(self):
        """Wait (at most ring_timeout) until executors offer R slots again: a lost executor is
        replaced after a while, and a barrier stage launched earlier fails its slot check."""
        master = self.sc.master
        if master == "local" or master.startswith("local["):
            return
        cores = int(self.sc.getConf().get("spark.executor.cores", "1"))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            executors = self.sc._jsc.sc().getExecutorMemoryStatus().size() - 1  # minus the driver's
            if executors * cores >= self.ranks:
                return
            time.sleep(0.5)

    def _final_weights(self):
        """Rank 0's weights, returned by the stage once every task stopped."""
        deadline = time.monotonic() + self.timeout
        while True:
            event = self.events.get(timeout=max(deadline - time.monotonic(), 0.01))
            if event[0] == "stage_done" and event[1] == self.launch:
                error = event[3]
                if error is None:
                    return event[2][0]
                fatal = self._fatal_report(self.launch)
                if fatal is not None:
                    raise TrainingError(f"the ring training stage failed while stopping: {fatal['message']}")
                # An executor lost around the stop (its failure can reach the barrier stage late):
                # launch anew; weights() replays from the last recovery checkpoint to the end.
                self._wait_for_slots()
                self._start_launch()
                raise TaskFailure(f"the barrier stage failed while stopping: {_short(error)}")
            if event[0] == "hello":
                event[3].close()

    # ---- training (the TrainingBackend verbs) ---------------------------------------
    def start(self, source):
        """Launch the stage and initialise its tasks from `source` (None: the initial weights)."""
        self.source, self.replay = source, []
        self._start_launch()
        self._connect()

    def _connect(self):
        """A fresh set of tasks at the current step: initialised from the recovery point, then
        replaying the steps since, silently (same bits: fixed sampling, seeds, reduction orders)."""
        while True:
            self.session = self._session(self.session and self.session.key)
            try:
                connected_ms = (time.time() - self.launched_at) * 1e3
                splits = self.session.all(("init", self.source))
                # Each phase's slowest rank, and the launch to the last hello: where the start went.
                self.opt.start_split_ms = {phase: round(max(split[phase] for split in splits), 1)
                                           for phase in splits[0]}
                self.opt.start_split_ms["all_connected"] = round(connected_ms, 1)
                for cmd in self.replay:
                    self.session.all(cmd)
                return
            except TaskFailure as e:
                # Spark retries the failed barrier stage (new hellos, a newer attempt) or gives
                # up on it (stage_done with an error, then _session launches anew).
                self.session.close()
                self._count(e)

    def _all(self, cmd):
        """Every rank's reply to `cmd`, recovering from failed tasks on the way; sets `received`
        to the bytes of the replies."""
        while True:
            before = self.session.received
            try:
                replies = self.session.all(cmd)
                self.received = self.session.received - before
                return replies
            except TaskFailure as e:
                self.session.close()
                self._count(e)
                self._connect()

    def step(self, step, epoch, iteration, lr, norms):
        cmd = ("step", dict(step=step, epoch=epoch, iteration=iteration, lr=lr, norms=norms))
        stats = self._all(cmd)
        self.replay.append(cmd)
        if "squares" in stats[0]:
            self.norms.append(merged_squares(step, [s["squares"] for s in stats]))
        count = sum(s["count"] for s in stats)
        times = dict(compute=max(s["compute_s"] for s in stats), data=max(s["data_s"] for s in stats),
                     sync=max(s["sync_s"] for s in stats), driver_bytes=self.received)
        return StepResult(loss=sum(s["loss_sum"] for s in stats) / max(count, 1), count=count, times=times)

    def validate(self):
        per_rank = self._all(("validate",))
        return metric_results(self.cfg["validation"]["metrics"], [parts for rank in per_rank for parts in rank])

    def checkpoint(self, root, meta, keep):
        """Write the checkpoint; it becomes the recovery point."""
        tmp = ckpt.begin(root, meta["step"])
        self._all(("checkpoint", tmp))
        self.source = ckpt.commit(tmp, root, dict(meta, slices=[list(b) for b in self.cfg["bounds"]]),
                                  self.opt.model, keep=keep)
        self.replay = []

    def weights(self):
        """Stop the tasks; rank 0's weights."""
        while True:
            self.session.tell(("stop",))
            try:
                weights = self._final_weights()
                self.stopped = True
                return weights
            except TaskFailure as e:
                self.session.close()
                self._count(e)
                self._connect()

    def known_norms(self):
        known, self.norms = self.norms, []
        return known

    def close(self):
        if not self.stopped:  # a failure: stop the stage's tasks
            self.sc.cancelJobGroup(f"{self.group}-{self.launch}")
        self.stopping = True
        if self.session is not None:
            self.session.close()
        self.server.close()


def _short(error):
    """The first line of a (possibly Java-wrapped) exception."""
    text = str(error).strip()
    for line in text.splitlines():
        if "Error:" in line or "Exception:" in line:
            return line.strip()[:500]
    return text.splitlines()[0][:500] if text else type(error).__name__
