"""A local folder whose files are copied to a remote storage folder, at most every `interval`
seconds and at close: how append-only outputs (training logs, TensorBoard event files) reach
storage that cannot append (object stores).

Each copy replaces whole files; an object store replaces an object in one PUT, so a
reader always sees some complete earlier version of each file.

Example:
    mirror = Mirror("s3://bucket/runs/7/tensorboard")
    write_events_into(mirror.local)
    mirror.sync()      # copied if `interval` seconds passed since the last copy
    mirror.close()     # copied, and the local folder removed
"""
import shutil
import tempfile
import time

from bigdl_py import storage


class Mirror:
    """Local temp folder `local`, copied to the folder `uri`.

    Args:
        uri: the remote folder (a storage URI).
        interval: least seconds between two copies made by `sync()`.
    """

    def __init__(self, uri, interval=30.0):
        self.uri, self.interval = uri, float(interval)
        self.local = tempfile.mkdtemp(prefix="bigdl_py-mirror-")
        self._last = time.monotonic()
        storage.makedirs(uri)

    def sync(self, force=False):
        """Copy the local files to `uri` when forced or when `interval` seconds have passed."""
        if force or time.monotonic() - self._last >= self.interval:
            storage.upload_dir(self.local, self.uri)
            self._last = time.monotonic()

    def close(self):
        """Copy a last time and remove the local folder."""
        try:
            self.sync(force=True)
        finally:
            shutil.rmtree(self.local, ignore_errors=True)
