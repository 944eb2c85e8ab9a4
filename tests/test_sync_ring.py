"""TCP collectives of the ring backend, R ranks as threads of this process on loopback.

Oracle: numpy sums of the ranks' vectors. Sums must be bit-identical on every rank
and between reruns (a fixed reduction order), and equal the oracle to round-off.
"""
import socket
import threading
import time

import numpy as np
import pytest

from bigdl_py.sync import ring
from bigdl_py.sync.blockmanager import slice_bounds

SECRET = b"the run's secret, 32 bytes long!"


def run_ranks(R, body, timeout=5.0, secrets=None, before=None):
    """Connect R ranks over loopback and run body(peers) on each in a thread; results by rank.

    secrets: each rank's secret (default all SECRET); before(addresses): runs once the ranks
    listen and before they connect (a stranger's turn)."""
    servers = [ring.listen("127.0.0.1") for _ in range(R)]
    addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in servers]
    results, errors = [None] * R, [None] * R
    if before is not None:
        before(addresses)

    def rank(r):
        peers = None
        try:
            peers = ring.Peers(r, addresses, servers[r], timeout, (secrets or [SECRET] * R)[r])
            results[r] = body(peers)
        except Exception as e:  # reported below, per rank
            errors[r] = e
        finally:
            if peers is not None:
                peers.close()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(R)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results, errors


def vectors(R, n, seed=0):
    return [np.random.default_rng([seed, r]).standard_normal(n).astype(np.float32) for r in range(R)]


@pytest.mark.parametrize("R", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("n", [1, 7, 1000, 50_000])
def test_ring_reduce_scatter_then_all_gather_is_an_all_reduce(R, n):
    data = vectors(R, n)
    chunks, _ = ring.owner_chunks(slice_bounds(n, R, range(0, n, 97)), R)

    def body(peers):
        buf = data[peers.rank].copy()
        ring.ring_reduce_scatter(peers, buf, chunks)
        lo, hi = chunks[peers.rank]
        owned = buf[lo:hi].copy()
        ring.ring_all_gather(peers, buf, chunks)
        return owned, buf

    results, errors = run_ranks(R, body)
    assert errors == [None] * R
    oracle = np.sum(np.stack(data).astype(np.float64), axis=0)
    for r, (owned, full) in enumerate(results):
        lo, hi = chunks[r]
        np.testing.assert_allclose(owned, oracle[lo:hi], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(full, results[0][1])  # every rank ends with the same bits
    np.testing.assert_allclose(results[0][1], oracle, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("R", [2, 3, 4, 5, 6, 7, 8])
def test_ring_reduce_scatter_of_buckets_gives_the_unbucketed_bits(R):
    n = 3001
    data = vectors(R, n, seed=1)
    chunks, _ = ring.owner_chunks(slice_bounds(n, R, [0, 500, 1200, 2000, 2900]), R)

    def body(bucketed):
        def run(peers):
            buf = data[peers.rank].copy()
            if bucketed:  # last layers first, as the backward pass finishes them
                for lo, hi in [(2000, 3001), (1200, 2000), (0, 1200)]:
                    ring.ring_reduce_scatter(peers, buf, chunks, lo, hi)
            else:
                ring.ring_reduce_scatter(peers, buf, chunks)
            lo, hi = chunks[peers.rank]
            return buf[lo:hi].copy()
        return run

    whole, e1 = run_ranks(R, body(False))
    buckets, e2 = run_ranks(R, body(True))
    assert e1 == e2 == [None] * R
    for a, b in zip(whole, buckets):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("R", [1, 2, 3, 4, 5, 6, 7, 8])
def test_butterfly_all_reduce_and_all_gather(R):
    n = 195
    data = vectors(R, n, seed=2)
    chunks, _ = ring.owner_chunks(slice_bounds(n, R, [0, 128, 144, 192]), R)

    def body(peers):
        buf = data[peers.rank].copy()
        ring.butterfly_all_reduce(peers, buf)
        owned = data[peers.rank].copy()
        ring.butterfly_all_gather(peers, owned, chunks)
        return buf, owned

    results, errors = run_ranks(R, body)
    assert errors == [None] * R
    oracle = np.sum(np.stack(data).astype(np.float64), axis=0)
    gathered = np.concatenate([data[r][lo:hi] for r, (lo, hi) in enumerate(chunks)])
    for summed, owned in results:
        np.testing.assert_array_equal(summed, results[0][0])
        np.testing.assert_array_equal(owned, gathered)  # x + 0 == x: the owners' exact bits
    np.testing.assert_allclose(results[0][0], oracle, rtol=1e-5, atol=1e-5)


def test_reruns_give_identical_bits():
    data = vectors(5, 20_000, seed=3)
    chunks, _ = ring.owner_chunks(slice_bounds(20_000, 5, []), 5)

    def body(peers):
        buf = data[peers.rank].copy()
        ring.ring_reduce_scatter(peers, buf, chunks)
        ring.ring_all_gather(peers, buf, chunks)
        return buf

    first, _ = run_ranks(5, body)
    second, _ = run_ranks(5, body)
    np.testing.assert_array_equal(first[0], second[0])


def test_owner_chunks_are_contiguous_whole_slices():
    bounds = slice_bounds(195, 4, [0, 128, 144, 192])  # snapping leaves 3 slices for 4 ranks
    chunks, owners = ring.owner_chunks(bounds, 4)
    assert chunks[0][0] == 0 and chunks[-1][1] == 195
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    for s, (lo, hi) in enumerate(bounds):
        assert chunks[owners[s]][0] <= lo and hi <= chunks[owners[s]][1]


def test_a_silent_peer_times_out_instead_of_hanging():
    servers = [ring.listen("127.0.0.1") for _ in range(2)]
    addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in servers]
    box = {}

    def silent():
        box["peer"] = ring.Peers(1, addresses, servers[1], 1.0, SECRET)  # connects, then never sends

    t = threading.Thread(target=silent)
    t.start()
    peers = ring.Peers(0, addresses, servers[0], 1.0, SECRET)
    t.join(10)
    t0 = time.monotonic()
    with pytest.raises(ring.CollectiveError, match="no data for 1 s while waiting for a header from rank 1"):
        ring.butterfly_all_reduce(peers, np.ones(10, np.float32))
    assert time.monotonic() - t0 < 5
    peers.close()
    box["peer"].close()


def test_a_vanished_peer_is_reported_with_its_rank():
    servers = [ring.listen("127.0.0.1") for _ in range(2)]
    addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in servers]
    t = threading.Thread(target=lambda: ring.Peers(1, addresses, servers[1], 5.0, SECRET).close())
    t.start()
    peers = ring.Peers(0, addresses, servers[0], 5.0, SECRET)
    t.join(10)
    with pytest.raises(ring.CollectiveError, match="rank 0: .*rank 1"):
        ring.butterfly_all_reduce(peers, np.ones(10, np.float32))
    peers.close()


def test_connecting_to_nobody_fails_fast():
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there any more
    server = ring.listen("127.0.0.1")
    with pytest.raises(ring.CollectiveError, match="rank 1: could not connect to its peers"):
        ring.Peers(1, [f"127.0.0.1:{port}", f"127.0.0.1:{server.getsockname()[1]}"], server, 1.0, SECRET)


def _all_reduce_sum(R, n=1000):
    def body(peers):
        buf = np.full(n, peers.rank + 1.0, np.float32)
        ring.butterfly_all_reduce(peers, buf)
        return buf
    return body, np.full(n, R * (R + 1) / 2, np.float32)


@pytest.mark.parametrize("behaviour", ["silent", "garbage", "claims_rank_2_without_the_secret", "wrong_secret"])
def test_a_stranger_on_a_ranks_port_is_closed_and_the_ring_still_forms(behaviour, caplog):
    R = 3
    closed = []

    def stranger(address):
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=15) as s:
            if behaviour == "garbage":
                s.sendall(b"GET / HTTP/1.1\r\n\r\n" * 10)
            elif behaviour == "claims_rank_2_without_the_secret":
                s.recv(16)
                s.sendall(ring._HELLO.pack(2, b"n" * 16, b"x" * 32))
            elif behaviour == "wrong_secret":
                challenge = s.recv(16)
                s.sendall(ring._HELLO.pack(2, b"n" * 16, ring._proof(b"another secret", b"c", challenge, 2, 0)))
            try:  # rank 0 sends at most its challenge, then closes the connection
                received = b""
                while chunk := s.recv(4096):
                    received += chunk
                closed.append(len(received) <= 16)
            except ConnectionResetError:
                closed.append(True)

    threads = []

    def before(addresses):
        threads.append(threading.Thread(target=stranger, args=(addresses[0],)))
        threads[0].start()
        time.sleep(0.2)  # the stranger is first in rank 0's accept queue

    body, expected = _all_reduce_sum(R)
    with caplog.at_level("WARNING", logger="bigdl_py"):
        results, errors = run_ranks(R, body, timeout=20.0, before=before)
    threads[0].join(20)
    assert errors == [None] * R
    for r in range(R):
        np.testing.assert_array_equal(results[r], expected)
    assert closed == [True]
    assert "did not authenticate" in caplog.text


def test_a_rank_with_another_secret_cannot_join():
    body, _ = _all_reduce_sum(2)
    results, errors = run_ranks(2, body, timeout=8.0, secrets=[SECRET, b"not the run's secret"])
    assert all(isinstance(e, ring.CollectiveError) for e in errors), errors
