"""PartitionedSampler: coverage, batch shares, determinism, and the global view the LocalOptimizer trains on."""
import numpy as np
import pytest

from bigdl_py.engine.sampling import PartitionedSampler

# (partition sizes, global batch B): one partition, B dividing N or not, B > N,
# balanced partitions as Spark's repartition makes them, skewed and empty partitions.
CASES = {
    "one_partition": ([50], 8),
    "divides": ([12, 12, 12, 12], 16),
    "last_short": ([13, 13, 12, 12], 16),
    "batch_over_n": ([3, 4], 32),
    "batch_of_one": ([3, 0, 2], 1),
    "skewed": ([97, 5, 40, 1], 10),
    "empty_partitions": ([0, 21, 0, 17, 0], 6),
    "many_partitions": ([7] * 9 + [6] * 3, 11),
}


def _iterate(sampler, epoch):
    """[iteration][partition] -> local indices."""
    perms = [sampler.partition_permutation(p, epoch) for p in range(len(sampler.sizes))]
    return [[sampler.local_indices(p, epoch, i, perms[p]) for p in range(len(sampler.sizes))]
            for i in range(sampler.iterations_per_epoch)]


@pytest.mark.parametrize("sizes,batch", CASES.values(), ids=CASES.keys())
def test_every_sample_is_visited_exactly_once_per_epoch(sizes, batch):
    s = PartitionedSampler(sizes, batch, seed=3)
    for epoch in range(3):
        per_iter = _iterate(s, epoch)
        for p, n in enumerate(sizes):
            seen = np.concatenate([it[p] for it in per_iter])
            assert np.array_equal(np.sort(seen), np.arange(n)), (epoch, p)


@pytest.mark.parametrize("sizes,batch", CASES.values(), ids=CASES.keys())
def test_shares_sum_to_the_batch_and_the_last_batch_is_short(sizes, batch):
    s = PartitionedSampler(sizes, batch)
    n = sum(sizes)
    assert s.iterations_per_epoch == -(-n // batch)
    totals = [sum(len(ix) for ix in it) for it in _iterate(s, 0)]
    last = n - batch * (s.iterations_per_epoch - 1)
    assert totals == [batch] * (s.iterations_per_epoch - 1) + [last]
    assert 0 < last <= batch


@pytest.mark.parametrize("sizes,batch", [([13, 13, 12, 12], 16), ([7] * 9 + [6] * 3, 11), ([100, 99], 7),
                                         ([25, 26, 25], 64), ([5, 5, 5, 4], 3)])
def test_shares_are_within_one_of_proportional_for_balanced_partitions(sizes, batch):
    # Spark's repartition gives sizes that differ by at most one: then every full
    # iteration gives partition p within one sample of B * n_p / N.
    s = PartitionedSampler(sizes, batch)
    ideal = batch * np.array(sizes) / sum(sizes)
    for it in _iterate(s, 0)[:-1]:
        shares = np.array([len(ix) for ix in it])
        assert np.all(np.abs(shares - ideal) < 1), (shares, ideal)


def test_skewed_partitions_take_exact_shares_when_the_ratios_allow():
    # Sizes 300 : 100 : 50 with B = 45: ideal shares 30, 10, 5 exactly, every iteration.
    s = PartitionedSampler([300, 100, 50], 45)
    for it in _iterate(s, 0):
        assert [len(ix) for ix in it] == [30, 10, 5]


def test_empty_partitions_take_nothing():
    s = PartitionedSampler([0, 21, 0, 17, 0], 6)
    for epoch in range(2):
        for it in _iterate(s, epoch):
            assert len(it[0]) == len(it[2]) == len(it[4]) == 0
            assert len(it[1]) > 0 and len(it[3]) > 0


def test_same_seed_same_order_and_new_epoch_new_order():
    a, b = PartitionedSampler([40, 30], 8, seed=7), PartitionedSampler([40, 30], 8, seed=7)
    for epoch in range(2):
        for ia, ib in zip(a.global_batches(epoch), b.global_batches(epoch)):
            assert np.array_equal(ia, ib)
    e0 = np.concatenate(list(a.global_batches(0)))
    e1 = np.concatenate(list(a.global_batches(1)))
    other_seed = np.concatenate(list(PartitionedSampler([40, 30], 8, seed=8).global_batches(0)))
    assert not np.array_equal(e0, e1)
    assert not np.array_equal(e0, other_seed)
    # Partitions shuffle independently: partition 1's order differs from partition 0's.
    assert not np.array_equal(a.partition_permutation(0, 0)[:30], a.partition_permutation(1, 0))


@pytest.mark.parametrize("sizes,batch", CASES.values(), ids=CASES.keys())
def test_global_batches_are_the_local_indices_offset_by_partition(sizes, batch):
    s = PartitionedSampler(sizes, batch, seed=1)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for epoch in range(2):
        batches = list(s.global_batches(epoch))
        assert len(batches) == s.iterations_per_epoch
        for i, (glob, local) in enumerate(zip(batches, _iterate(s, epoch))):
            owner = np.searchsorted(np.cumsum(sizes), glob, side="right")
            assert np.all(np.diff(owner) >= 0), i  # listed partition by partition
            for p, ix in enumerate(local):
                assert np.array_equal(np.sort(glob[owner == p]), np.sort(offsets[p] + ix)), (i, p)
        assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(sum(sizes)))


def test_local_indices_without_a_permutation_recomputes_the_same_one():
    s = PartitionedSampler([9, 8], 5, seed=2)
    perm = s.partition_permutation(1, 4)
    for i in range(s.iterations_per_epoch):
        assert np.array_equal(s.local_indices(1, 4, i), s.local_indices(1, 4, i, perm))


@pytest.mark.parametrize("sizes,batch,match", [
    ([], 4, "partition_sizes"),
    ([3, -1], 4, "partition_sizes"),
    ([[3, 4]], 4, "partition_sizes"),
    ([0, 0], 4, "empty"),
    ([2.5, 3], 4, "partition_sizes"),
    ([5], 0, "batch_size"),
    ([5], -2, "batch_size"),
    ([5], 2.0, "batch_size"),
    ([5], "4", "batch_size"),
])
def test_bad_arguments_raise_value_error(sizes, batch, match):
    with pytest.raises(ValueError, match=match):
        PartitionedSampler(sizes, batch)


def test_permutation_is_kept_per_process_for_the_epoch():
    from bigdl_py.engine import sampling

    sampler = PartitionedSampler([50, 30], batch_size=8, seed=3)
    first = sampler.partition_permutation(0, 1)
    assert not first.flags.writeable
    assert PartitionedSampler([50, 30], batch_size=8, seed=3).partition_permutation(0, 1) is first
    expected = np.random.default_rng([3, 1, 0]).permutation(50)
    np.testing.assert_array_equal(first, expected)
    sampler.partition_permutation(1, 2)  # a new epoch drops the old one
    assert all(key[3] == 2 for key in sampling._PERMUTATIONS)
    np.testing.assert_array_equal(sampler.partition_permutation(0, 1), expected)
    other_seed = PartitionedSampler([50, 30], batch_size=8, seed=4).partition_permutation(0, 1)
    assert not np.array_equal(other_seed, expected)
