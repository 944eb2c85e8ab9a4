"""sync="auto": pick the all-reduce backend from the model size and measured compute.

Per-iteration cost models (the compute is the same for both and cancels):
- blockmanager: one Spark job of two map stages, measured as ~2.2x the latency of
  a trivial Spark job on the same session, plus the vector through the shuffle twice;
- ring: 2 (R-1)/R of the vector through every link plus 2 (R-1) message latencies
  and one driver round trip.
The ring is cheaper per iteration on any model, but it holds R task slots for the
whole run and replays iterations after an executor loss, while the block-manager
backend only recomputes lost blocks. So when the block-manager's overhead is a small
share of the compute (<= OVERHEAD_SHARE) it is chosen for its gentler failure mode;
otherwise the ring.
"""
LINK_BYTES_S = 1.0e9  # a conservative loopback/10GbE figure for one TCP stream from Python
MESSAGE_LATENCY_S = 2e-4  # one small message between Python workers, send to receive
OVERHEAD_SHARE = 0.10
JOB_FACTOR = 2.2  # a block-manager iteration's overhead / a trivial job's latency (bench_distributed)


def choose_backend(num_params, compute_s, ranks, trivial_job_s):
    """(backend name, reason) for a model of num_params float32 weights on `ranks` ranks."""
    nbytes = 4.0 * num_params
    ring_s = (2.0 * (ranks - 1) / max(ranks, 1) * nbytes / LINK_BYTES_S
              + 2 * (ranks - 1) * MESSAGE_LATENCY_S + MESSAGE_LATENCY_S)
    block_s = JOB_FACTOR * trivial_job_s + 2.0 * nbytes / LINK_BYTES_S
    facts = (f"{num_params} parameters, measured compute {compute_s * 1e3:.1f} ms/iteration, "
             f"estimated sync: ring {ring_s * 1e3:.1f} ms, blockmanager {block_s * 1e3:.1f} ms "
             f"({JOB_FACTOR} x trivial Spark job {trivial_job_s * 1e3:.1f} ms)")
    if block_s <= OVERHEAD_SHARE * compute_s:
        return "blockmanager", (f"{facts}: the block-manager overhead is <= {OVERHEAD_SHARE:.0%} of the "
                                f"compute, and it recovers from executor loss without replaying iterations")
    return "ring", f"{facts}: the ring saves {(block_s - ring_s) * 1e3:.1f} ms per iteration"
