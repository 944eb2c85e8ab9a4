"""Where Spark runs our tasks: one partitioner for every keyed RDD, and tasks pinned to spread slots.

Spark places a task where its input prefers: cached blocks, or the hosts that hold a large share of
a shuffle's map outputs. Left alone, the data cache follows wherever the DataFrame's partitions
happened to be (a cached DataFrame may sit on a few executors) and the weight updates follow their
own map outputs onto one executor, while other executors idle. These helpers pin the data tokens
to slots spread over the executors, and the stages that must run beside them to the tokens.
"""


def by_key(key):
    """Identity partitioner: key k goes to partition k. One function object, so RDDs partitioned
    with it (the data tokens, the all-reduce's shuffles) compare equal and their unions stay narrow."""
    return key


def submit_map_stage(rdd):
    """Start computing the map side of the shuffle `rdd` reads (and its missing parents),
    with no result stage. Returns the job's future: `.get()` waits for it."""
    jrdd = rdd._jrdd.rdd()
    while True:
        dep = jrdd.dependencies().head()
        if dep.getClass().getSimpleName() == "ShuffleDependency":
            break
        jrdd = dep.rdd()
    return rdd.context._jsc.sc().submitMapStage(dep)


def spread_slots(sc, n):
    """n tiny records, record p in partition p under by_key, written by tasks spread like the slots.

    The writing tasks have no locality preference and run as a job of their own, before anything
    else of the caller's: Spark hands them round-robin to the free executors, so partition p then
    prefers a host of its own.
    """
    slots = sc.parallelize(range(n), n).map(lambda p: (p, ("slot",))).partitionBy(n, by_key)
    submit_map_stage(slots).get()
    return slots


def outvoted_union(sc, rdds, pins):
    """Co-partitioned (narrow) union of `rdds` and `pins`, run where `pins` prefers.

    Spark runs a co-partitioned union's task on the host most of its parents' partitions prefer,
    each parent naming every host that holds a large share of its input; `pins` enters once more
    than all other parents together, so it outvotes them.
    """
    union = sc.union([*rdds, *[pins] * (len(rdds) + 1)])
    if union.getNumPartitions() != pins.getNumPartitions():
        raise RuntimeError("a union that must be narrow is not: its parents are not co-partitioned "
                           f"({[r.getNumPartitions() for r in rdds]} vs {pins.getNumPartitions()} partitions)")
    return union
