"""Which samples each partition trains on in each iteration.

One rule serves both engines, which is what makes synchronous SGD exact: the
distributed optimizer over P partitions and the LocalOptimizer given the same
partition sizes visit the very same samples in every iteration.

- Every epoch, partition p shuffles its own n_p samples with a generator seeded by
  (seed, epoch, p) and consumes them in that order.
- The global batch B is split between partitions in proportion to their sizes by a
  fixed interleaving of all N samples: partition p's k-th sample sits at global
  position rank((k + 0.5) / n_p). Iteration i takes global positions
  [i*B, (i+1)*B), so each partition's share is proportional to its size, any B works
  (no "B must divide by P"), the last batch of an epoch may be short, and empty
  partitions simply take nothing.
"""
import numpy as np


_PERMUTATIONS = {}  # (seed, partition, size, epoch) -> that partition's order; one epoch at a time


class PartitionedSampler:
    """Deterministic sample order over partitions of the given sizes.

    Args:
        partition_sizes: number of samples in each partition (zeros allowed).
        batch_size: global batch size B >= 1.
        seed: base seed; the order is a pure function of (seed, epoch, partition).
    """

    def __init__(self, partition_sizes, batch_size, seed=0):
        raw = np.asarray(partition_sizes)
        # Casting first would silently truncate fractional sizes (2.5 -> 2).
        if (raw.ndim != 1 or raw.size == 0 or not np.issubdtype(raw.dtype, np.integer)
                or (raw < 0).any()):
            raise ValueError(f"partition_sizes: expected a non-empty list of non-negative integer counts, "
                             f"received {partition_sizes!r}")
        sizes = raw.astype(np.int64)
        if sizes.sum() == 0:
            raise ValueError("partition_sizes: the training data is empty (all partitions have 0 samples)")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, received {batch_size!r}")
        self.sizes = sizes
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.total = int(sizes.sum())
        self.iterations_per_epoch = -(-self.total // self.batch_size)
        self._bounds = self._share_bounds()

    def _share_bounds(self):
        """bounds[i, p]: how many of partition p's samples iterations 0..i-1 consumed."""
        keys = np.concatenate([(np.arange(n) + 0.5) / n for n in self.sizes if n > 0])
        owner = np.concatenate([np.full(n, p) for p, n in enumerate(self.sizes) if n > 0])
        order = owner[np.argsort(keys, kind="stable")]
        starts = np.minimum(np.arange(self.iterations_per_epoch + 1) * self.batch_size, self.total)
        bounds = np.zeros((self.iterations_per_epoch + 1, len(self.sizes)), dtype=np.int64)
        for p in range(len(self.sizes)):
            taken = np.concatenate([[0], np.cumsum(order == p)])
            bounds[:, p] = taken[starts]
        return bounds

    def partition_permutation(self, partition, epoch):
        """This epoch's order of partition p's local sample indices.

        Kept per process for the epoch at hand: training asks for it every iteration
        (ring workers, and block-manager tasks in reused Python workers), and permuting
        a 1M-sample partition took 15-140 ms, many times an MLP's step.
        """
        key = (self.seed, int(partition), int(self.sizes[partition]), int(epoch))
        if key not in _PERMUTATIONS:
            for old in [k for k in _PERMUTATIONS if k[3] != key[3]]:
                del _PERMUTATIONS[old]
            rng = np.random.default_rng([self.seed, key[3], key[1]])
            _PERMUTATIONS[key] = rng.permutation(key[2])
            _PERMUTATIONS[key].setflags(write=False)  # shared by every caller
        return _PERMUTATIONS[key]

    def local_indices(self, partition, epoch, iteration, permutation=None):
        """Local indices partition p trains on in iteration i of the epoch (maybe empty)."""
        perm = self.partition_permutation(partition, epoch) if permutation is None else permutation
        lo, hi = self._bounds[iteration, partition], self._bounds[iteration + 1, partition]
        return perm[lo:hi]

    def partition_batches(self, epoch):
        """Per iteration, a list holding each partition's share as global indices.

        Global indices point into the partitions concatenated; each share is sorted,
        as the distributed engine reads it (sequential memory access).
        """
        offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        perms = [self.partition_permutation(p, epoch) for p in range(len(self.sizes))]
        for i in range(self.iterations_per_epoch):
            yield [offsets[p] + np.sort(self.local_indices(p, epoch, i, perms[p])) for p in range(len(self.sizes))]

    def global_batches(self, epoch):
        """Per iteration, the global indices of its whole batch, partition by partition."""
        for shares in self.partition_batches(epoch):
            yield np.concatenate(shares)
