"""Atomic file and directory writes: temp name beside the target, fsync, rename.

A crash at any point leaves the old content or the new one under the target
name (or, when a directory replaces another, possibly neither for an instant),
never a half-written file that looks valid. Leftover temp names start with "."
and contain ".tmp-" (see `is_temp_name`) so that listings of models or
checkpoints can skip them. They also name the writing process and host
(`.model.tmp-<pid>@<host>-<hex>`): the next `atomic_directory` write into the same
folder deletes those whose process has died on this host.
"""
import contextlib
import json
import os
import re
import shutil
import socket
import uuid

import numpy as np


_OWNED_TEMP = re.compile(r"\..+\.tmp-(?P<pid>[0-9]+)@(?P<host>.+)-[0-9a-f]{8}")


def _temp_path(path):
    head, tail = os.path.split(os.path.abspath(path))
    return os.path.join(head, f".{tail}.tmp-{os.getpid()}@{socket.gethostname()}-{uuid.uuid4().hex[:8]}")


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def remove_abandoned_temps(folder):
    """Delete the temp files and folders in `folder` left by writes whose process died on this host.

    Temps of live processes (writes in progress) and of other hosts (a shared mount) are kept.
    """
    host = socket.gethostname()
    for name in os.listdir(folder):
        owner = _OWNED_TEMP.fullmatch(name)
        if owner is None or owner["host"] != host or _process_alive(int(owner["pid"])):
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def is_temp_name(name):
    """True for names made by this module for unfinished writes."""
    base = os.path.basename(os.path.normpath(name))
    return base.startswith(".") and ".tmp-" in base


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path, data):
    """Write bytes, or call data(file) to stream them, then fsync."""
    with open(path, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _npz_writer(arrays):
    return lambda f: np.savez(f, **arrays)


def _json_bytes(obj):
    return json.dumps(obj, indent=1, allow_nan=False).encode("utf-8")


def atomic_write_bytes(path, data):
    """Write `data` to `path` atomically (temp file + fsync + os.replace + fsync of the folder).

    `data` is bytes, or a function that writes them to the open binary file it is given.
    """
    tmp = _temp_path(path)
    try:
        _write_synced(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def atomic_write_json(path, obj):
    """Write `obj` as JSON atomically (NaN/inf are refused: they are not JSON)."""
    atomic_write_bytes(path, _json_bytes(obj))


def atomic_write_npz(path, arrays):
    """Write {name: ndarray} as an uncompressed .npz archive atomically."""
    atomic_write_bytes(path, _npz_writer(arrays))


@contextlib.contextmanager
def atomic_directory(path):
    """Build a directory under a temp name, then move it to `path` in one rename.

    Yields the temp directory to fill with `write_file`, `write_json` and
    `write_npz`. On success its files and
    the folder are fsynced and it replaces `path` (an existing directory at `path`
    is moved aside first and deleted after). On an exception the temp directory is
    removed and `path` is untouched. Temps of killed earlier writes into the same
    folder are deleted first (`remove_abandoned_temps`).
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{path}: exists and is not a directory; refusing to replace it")
    if os.path.isdir(os.path.dirname(path)):
        remove_abandoned_temps(os.path.dirname(path))
    tmp = _temp_path(path)
    os.makedirs(tmp)
    try:
        yield tmp
        _fsync_dir(tmp)
        old = None
        if os.path.exists(path):
            # rename(2) cannot replace a non-empty directory: move the old one aside.
            old = _temp_path(path)
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(os.path.dirname(path))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_file(directory, name, data):
    """Write bytes into `directory/name` and fsync them (inside atomic_directory)."""
    _write_synced(os.path.join(directory, name), data)


def write_json(directory, name, obj):
    """Write `obj` as JSON into `directory/name` and fsync (inside atomic_directory)."""
    _write_synced(os.path.join(directory, name), _json_bytes(obj))


def write_npz(directory, name, arrays):
    """Write {name: ndarray} as an .npz into `directory/name` and fsync (inside atomic_directory)."""
    _write_synced(os.path.join(directory, name), _npz_writer(arrays))
