"""All-reduce of one flat float32 vector between Python workers over TCP.

R ranks, each holding a full-length vector, are connected pairwise (a full mesh of
sockets bound to each executor's own address). Rank r owns a contiguous range of the
vector, `chunks[r] = (lo, hi)` (possibly empty), made of whole optimizer slices:

- large messages: ring reduce-scatter (after it, rank r holds the sum of its chunk)
  and ring all-gather (every rank gets every owner's chunk), 2 (R-1)/R of the vector
  through every link, the bandwidth-optimal schedule;
- small messages: recursive doubling (butterfly) all-reduce, log2 R exchanges of the
  whole vector, the latency-optimal one; a non-power-of-two R first folds the extra
  ranks into partners and hands them the result at the end.

Every sum is computed in a fixed order that depends only on (R, rank, chunk), so a
rerun of an iteration gives the same bits. Sends go through one sender thread, so a
rank can send and receive at once (a ring where everyone sends first would deadlock
once the socket buffers fill) and the caller's thread keeps computing. Every socket
has a timeout: a lost peer raises `CollectiveError` instead of hanging.
"""
import queue
import socket
import struct
import threading

import numpy as np

SMALL_MESSAGE_BYTES = 64 * 1024  # below this the butterfly's log2(R) latency terms win
_HEADER = struct.Struct("!iQ")  # sender rank, payload bytes


class CollectiveError(RuntimeError):
    """A peer vanished, timed out or sent something unexpected."""


def owner_chunks(bounds, ranks):
    """(lo, hi) of the flat range each rank owns: whole slices, contiguous, in slice order.

    Slice s goes to rank s * ranks // len(bounds), so with as many slices as ranks
    rank r owns slice r (and with fewer slices some ranks own nothing).
    """
    owners = [s * ranks // len(bounds) for s in range(len(bounds))]
    chunks = []
    for r in range(ranks):
        mine = [bounds[s] for s in range(len(bounds)) if owners[s] == r]
        start = mine[0][0] if mine else (chunks[-1][1] if chunks else 0)
        chunks.append((start, mine[-1][1]) if mine else (start, start))
    return chunks, owners


def listen(host):
    """A listening socket on host (the executor's own address), any free port."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, 0))
    server.listen(64)
    return server


class Peers:
    """Sockets from this rank to every other rank, a sender thread and typed receives.

    Args:
        rank: this rank.
        addresses: "host:port" of every rank's listener (from the barrier allGather).
        server: this rank's listening socket (its address is addresses[rank]).
        timeout: seconds any connect, send or receive may wait.
    """

    def __init__(self, rank, addresses, server, timeout):
        self.rank, self.size, self.timeout = rank, len(addresses), float(timeout)
        self.socks = {}
        server.settimeout(self.timeout)
        try:
            # Rank r connects to the lower ranks and accepts the higher ones: one socket per pair.
            for q in range(rank):
                host, port = addresses[q].rsplit(":", 1)
                s = socket.create_connection((host, int(port)), timeout=self.timeout)
                s.sendall(struct.pack("!i", rank))
                self._add(q, s)
            for _ in range(rank + 1, self.size):
                s, _ = server.accept()
                s.settimeout(self.timeout)
                self._add(self._recv_exact(s, 4, "its rank").view(">i4")[0], s)
        except OSError as e:
            self.close()
            raise CollectiveError(f"rank {rank}: could not connect to its peers ({e})") from None
        finally:
            server.close()
        self._outbox = queue.Queue()
        self._send_error = None
        self._sender = threading.Thread(target=self._send_loop, daemon=True, name=f"ring-sender-{rank}")
        self._sender.start()

    def _add(self, q, s):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(self.timeout)
        self.socks[int(q)] = s

    # ---- point to point ------------------------------------------------------------
    def send(self, q, array):
        """Queue a copy of `array` for rank q (returns at once; order per peer is kept)."""
        if self._send_error is not None:
            raise self._send_error
        self._outbox.put((q, np.ascontiguousarray(array).tobytes()))

    def _send_loop(self):
        while True:
            item = self._outbox.get()
            if item is None:
                return
            q, payload = item
            try:
                self.socks[q].sendall(_HEADER.pack(self.rank, len(payload)) + payload)
            except OSError as e:
                self._send_error = CollectiveError(f"rank {self.rank}: sending to rank {q} failed ({e})")
                return

    def recv_into(self, q, out):
        """Receive the next message from rank q into the float32 array `out` (exact size)."""
        if self._send_error is not None:
            raise self._send_error
        header = self._recv_exact(self.socks[q], _HEADER.size, f"a header from rank {q}")
        sender, nbytes = _HEADER.unpack(header.tobytes())
        if sender != q or nbytes != out.nbytes:
            raise CollectiveError(f"rank {self.rank}: expected {out.nbytes} bytes from rank {q}, "
                                  f"received a message of {nbytes} bytes from rank {sender} (out of step)")
        out[...] = self._recv_exact(self.socks[q], nbytes, f"{nbytes} bytes from rank {q}").view(out.dtype)
        return out

    def _recv_exact(self, s, nbytes, what):
        buf = np.empty(nbytes, dtype=np.uint8)
        view, got = memoryview(buf), 0
        try:
            while got < nbytes:
                n = s.recv_into(view[got:])
                if n == 0:
                    raise CollectiveError(f"rank {self.rank}: connection closed while waiting for {what}")
                got += n
        except socket.timeout:
            raise CollectiveError(f"rank {self.rank}: no data for {self.timeout:g} s while waiting for {what}") \
                from None
        except OSError as e:
            raise CollectiveError(f"rank {self.rank}: receiving {what} failed ({e})") from None
        return buf

    def close(self):
        """Let queued messages go out (bounded by the timeout), then close every socket."""
        if hasattr(self, "_outbox"):
            self._outbox.put(None)
            self._sender.join(self.timeout)
        for s in self.socks.values():
            try:
                s.close()
            except OSError:
                pass
        self.socks = {}


def _segments(chunks, lo, hi):
    """The chunks clipped to [lo, hi) (a bucket), as (lo, hi) per rank."""
    return [(min(max(a, lo), hi), max(min(b, hi), min(max(a, lo), hi))) for a, b in chunks]


def ring_reduce_scatter(peers, buf, chunks, lo=0, hi=None):
    """In place: afterwards buf[chunks[rank]] (within [lo, hi)) holds the sum over ranks.

    Chunk c accumulates along the ring starting at rank c+1, so its sum order is fixed.
    Other ranges of buf hold partial sums afterwards.
    """
    R, r = peers.size, peers.rank
    if R == 1:
        return buf
    parts = _segments(chunks, lo, buf.size if hi is None else hi)
    nxt, prev = (r + 1) % R, (r - 1) % R
    incoming = np.empty(max(b - a for a, b in parts), dtype=buf.dtype)
    for t in range(R - 1):
        a, b = parts[(r - t - 1) % R]
        peers.send(nxt, buf[a:b])
        a, b = parts[(r - t - 2) % R]
        got = peers.recv_into(prev, incoming[:b - a])
        np.add(buf[a:b], got, out=buf[a:b])
    return buf


def ring_all_gather(peers, buf, chunks, lo=0, hi=None):
    """In place: every rank's chunk of buf (within [lo, hi)) reaches every rank."""
    R, r = peers.size, peers.rank
    if R == 1:
        return buf
    parts = _segments(chunks, lo, buf.size if hi is None else hi)
    nxt, prev = (r + 1) % R, (r - 1) % R
    for t in range(R - 1):
        a, b = parts[(r - t) % R]
        peers.send(nxt, buf[a:b])
        a, b = parts[(r - t - 1) % R]
        peers.recv_into(prev, buf[a:b])
    return buf


def butterfly_all_reduce(peers, buf):
    """In place: buf becomes the sum over ranks on every rank (recursive doubling).

    With R not a power of two, rank R' + k (R' the largest power of two <= R) first
    hands its vector to rank k, which adds it; the R' ranks exchange whole vectors
    with partner rank ^ 2^j for j = 0, 1, ...; rank k hands the result back. Partners
    add the same two vectors (a + b == b + a exactly), so all ranks end bit-identical.
    """
    R, r = peers.size, peers.rank
    if R == 1:
        return buf
    base = 1 << (R.bit_length() - 1)
    incoming = np.empty_like(buf)
    if r >= base:
        peers.send(r - base, buf)
        return peers.recv_into(r - base, buf)
    if r + base < R:
        np.add(buf, peers.recv_into(r + base, incoming), out=buf)
    mask = 1
    while mask < base:
        partner = r ^ mask
        peers.send(partner, buf)
        np.add(buf, peers.recv_into(partner, incoming), out=buf)
        mask <<= 1
    if r + base < R:
        peers.send(r + base, buf)
    return buf


def butterfly_all_gather(peers, buf, chunks):
    """In place: every owner's chunk reaches every rank (butterfly over owner-masked vectors).

    Each rank zeroes what it does not own and the butterfly sums: x + 0 == x exactly,
    so the result is the owners' values bit for bit.
    """
    if peers.size == 1:
        return buf
    lo, hi = chunks[peers.rank]
    mine = buf[lo:hi].copy()
    buf[:] = 0
    buf[lo:hi] = mine
    return butterfly_all_reduce(peers, buf)


def uses_ring(nbytes, ranks):
    """True when the ring schedule should carry a message of nbytes between `ranks` ranks."""
    return ranks > 1 and nbytes >= SMALL_MESSAGE_BYTES
