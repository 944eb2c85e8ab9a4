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

Every connection proves the run's secret both ways before a byte of payload is read (HMAC
challenge-response over fresh nonces, bound to both ranks): a stranger that connects to a
rank's listener is closed and logged, and the rank goes on waiting for its real peers.
"""
import hashlib
import hmac
import logging
import os
import queue
import socket
import struct
import threading
import time

import numpy as np

SMALL_MESSAGE_BYTES = 64 * 1024  # below this the butterfly's log2(R) latency terms win
_HEADER = struct.Struct("!iQ")  # sender rank, payload bytes
_NONCE_BYTES = 16
_MAC_BYTES = hashlib.sha256().digest_size
_HELLO = struct.Struct(f"!i{_NONCE_BYTES}s{_MAC_BYTES}s")  # connector's rank, its nonce, its proof
HANDSHAKE_TIMEOUT_S = 5.0  # how long an unauthenticated connection may hold a listener
_LOG = logging.getLogger("bigdl_py")


class CollectiveError(RuntimeError):
    """A peer vanished, timed out or sent something unexpected."""


def _proof(secret, role, nonce, connector, acceptor):
    """HMAC-SHA256 of the peer's nonce, bound to the role ("c"/"a") and both ranks."""
    return hmac.new(secret, role + nonce + struct.pack("!ii", connector, acceptor), hashlib.sha256).digest()


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
        secret: the run's shared secret (bytes), which every connection proves both ways.
    """

    def __init__(self, rank, addresses, server, timeout, secret):
        self.rank, self.size, self.timeout = rank, len(addresses), float(timeout)
        self.secret = bytes(secret)
        self.socks = {}
        try:
            # Rank r connects to the lower ranks and accepts the higher ones: one socket per pair.
            for q in range(rank):
                host, port = addresses[q].rsplit(":", 1)
                s = socket.create_connection((host, int(port)), timeout=self.timeout)
                self._add(q, s)
                self._prove_to(q, s)
            self._accept_peers(server)
        except CollectiveError:
            self.close()
            raise
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

    def _prove_to(self, q, s):
        """Connector's side: answer rank q's challenge, then check q's answer to ours."""
        challenge = self._recv_exact(s, _NONCE_BYTES, f"rank {q}'s challenge").tobytes()
        nonce = os.urandom(_NONCE_BYTES)
        s.sendall(_HELLO.pack(self.rank, nonce, _proof(self.secret, b"c", challenge, self.rank, q)))
        answer = self._recv_exact(s, _MAC_BYTES, f"rank {q}'s proof").tobytes()
        if not hmac.compare_digest(answer, _proof(self.secret, b"a", nonce, self.rank, q)):
            raise CollectiveError(f"rank {self.rank}: the listener at rank {q}'s address could not prove the "
                                  f"run's secret")

    def _accept_peers(self, server):
        """Acceptor's side: take connections until every higher rank has proved the secret.

        A connection that does not prove it within HANDSHAKE_TIMEOUT_S (a stranger, a port
        scanner, a task of another run) is logged and closed; the wait for the real peers goes on.
        """
        missing = set(range(self.rank + 1, self.size))
        deadline = time.monotonic() + self.timeout
        while missing:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CollectiveError(f"rank {self.rank}: ranks {sorted(missing)} did not connect within "
                                      f"{self.timeout:g} s")
            server.settimeout(left)
            s, address = server.accept()
            s.settimeout(min(HANDSHAKE_TIMEOUT_S, self.timeout))
            try:
                nonce = os.urandom(_NONCE_BYTES)
                s.sendall(nonce)
                q, theirs, proof = _HELLO.unpack(self._recv_exact(s, _HELLO.size, "a peer's hello").tobytes())
                if q not in missing or not hmac.compare_digest(proof, _proof(self.secret, b"c", nonce, q, self.rank)):
                    raise CollectiveError(f"rank {self.rank}: a connection claiming rank {q} did not prove the "
                                          f"run's secret")
                s.sendall(_proof(self.secret, b"a", theirs, q, self.rank))
            except (CollectiveError, OSError) as e:
                _LOG.warning("ring rank %d: closed a connection from %s that did not authenticate (%s)",
                             self.rank, address, e)
                s.close()
                continue
            missing.discard(q)
            self._add(q, s)

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
