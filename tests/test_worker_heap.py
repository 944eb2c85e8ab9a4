"""settle_heap: a Spark worker's live heap leaves the per-task collection; dropped cycles are still freed."""
import gc


def _settle_twice(_):
    import gc
    import weakref

    from bigdl_py.worker_heap import settle_heap

    class Node:
        pass

    cycle = Node()
    cycle.self = cycle  # freed only by the cycle collector
    alive = weakref.ref(cycle)
    settle_heap("test-run-a")
    frozen_after_first = gc.get_freeze_count()
    del cycle
    gc.collect()  # what PySpark does after every task: frozen objects are not examined
    kept_while_frozen = alive() is not None
    settle_heap("test-run-a")  # same key: nothing happens
    unchanged = gc.get_freeze_count() == frozen_after_first
    settle_heap("test-run-b")  # a new run: unfreeze, collect, freeze again
    return [(frozen_after_first, kept_while_frozen, unchanged, alive() is None)]


def test_settle_heap_freezes_in_a_task_and_frees_dropped_cycles_at_the_next_run(spark):
    frozen, kept_while_frozen, unchanged, freed = (
        spark.sparkContext.parallelize([0], 1).mapPartitions(_settle_twice).collect()[0])
    assert frozen > 10_000  # pyspark, numpy and our modules' objects
    assert kept_while_frozen and unchanged
    assert freed


def test_settle_heap_does_nothing_outside_a_spark_task():
    from bigdl_py.worker_heap import settle_heap

    before = gc.get_freeze_count()
    settle_heap("driver-side")
    assert gc.get_freeze_count() == before
