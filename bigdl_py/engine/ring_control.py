"""Messages between the driver and the ring backend's training tasks.

One TCP connection per task to a listener on the driver. Frames are a length and a
pickled Python object (small: commands, per-iteration statistics, metric partials;
never a weight or gradient vector except the final weights once). Nothing is
unpickled before the peer has sent the run's random token, so only this run's own
tasks can talk to the driver. Nothing here is written to a file.
"""
import pickle
import socket
import struct

_LEN = struct.Struct("!Q")


class ControlError(RuntimeError):
    """The other side closed the connection, timed out, or broke the protocol."""


def send_msg(sock, obj):
    """Send one object; returns the bytes sent (the driver counts them)."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        sock.sendall(_LEN.pack(len(payload)) + payload)
    except OSError as e:
        raise ControlError(f"sending a control message failed ({e})") from None
    return _LEN.size + len(payload)


def recv_exact(sock, n):
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    try:
        while got < n:
            k = sock.recv_into(view[got:])
            if k == 0:
                raise ControlError("the control connection was closed")
            got += k
    except socket.timeout:
        raise ControlError(f"no control message for {sock.gettimeout():g} s") from None
    except OSError as e:
        raise ControlError(f"the control connection failed ({e})") from None
    return bytes(buf)


def recv_msg(sock):
    """(object, bytes received) of the next frame."""
    (n,) = _LEN.unpack(recv_exact(sock, _LEN.size))
    return pickle.loads(recv_exact(sock, n)), _LEN.size + n


def connect(address, token, hello, timeout):
    """Task side: connect to the driver, authenticate, introduce this task."""
    host, port = address.rsplit(":", 1)
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as e:
        raise ControlError(f"could not reach the driver at {address} ({e})") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.sendall(token)
    except OSError as e:
        raise ControlError(f"could not reach the driver at {address} ({e})") from None
    send_msg(sock, hello)
    return sock
