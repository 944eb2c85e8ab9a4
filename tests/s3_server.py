"""A real S3 server on loopback for the storage tests: moto's standalone server, one per test module.

`s3_root` yields an s3:// URI of a fresh bucket that carries the endpoint and the
credentials in the URI (see bigdl_py.storage), so executors reach it with no other setup.
"""
import os
import socket
import subprocess
import sys
import time
import uuid

import pyarrow.fs as pafs
import pytest


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_listening(port, proc, deadline):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto server not listening on 127.0.0.1:{port} after the deadline")


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """host:port of a moto S3 server started for this module and stopped by PID after it."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "server.log", "wb")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    proc = subprocess.Popen(["timeout", "1800", sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_until_listening(port, proc, time.monotonic() + 60)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def s3_root(s3_endpoint):
    """s3:// URI of a new empty bucket on the module's server."""
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    fs = pafs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http", access_key="test", secret_key="test",
                           region="us-east-1", allow_bucket_creation=True)
    fs.create_dir(bucket)
    return f"s3://test:test@{bucket}/root?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"


def local_or_s3_root(name):
    """A fixture parametrized over a local folder and an S3 prefix, each called `name`."""
    @pytest.fixture(params=["local", "s3"])
    def root(request, tmp_path):
        if request.param == "local":
            return str(tmp_path / name)
        from bigdl_py import storage

        return storage.join(request.getfixturevalue("s3_root"), name)
    return root
