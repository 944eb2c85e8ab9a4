"""Files named by URI on any storage every host can reach, through pyarrow.fs.

Accepted names:
    /plain/path, relative/path, file:///path   the local filesystem (or an NFS mount)
    hdfs://namenode:8020/path, hdfs:///path     HDFS through libhdfs (needs HADOOP_HOME
                                                 / CLASSPATH as for any libhdfs client)
    s3://bucket/path, s3a://bucket/path         S3 or an S3-compatible store

S3 options ride in the URI's query, as pyarrow reads them
(`s3://bucket/ckpt?endpoint_override=host:9000&scheme=http&region=us-east-1`);
credentials come from the usual AWS chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
~/.aws, instance roles) or from the URI's user part (`s3://key:secret@bucket/...`).
A URI is resolved again wherever it is used (driver or executor), so every process
that touches it needs the same credentials.

Commit protocol: a local or HDFS folder is committed by one rename (`renames_atomically`);
object stores have no atomic rename, so writers put the files in place and a marker
file LAST, and readers trust only what carries the marker.

Example:
    write_bytes("s3://bucket/run/a.json", b"{}")
    read_bytes(join("s3://bucket/run", "a.json"))  # b"{}"
"""
import functools
import io
import os
import posixpath
from urllib.parse import urlsplit, urlunsplit

import pyarrow.fs as pafs

_SCHEMES = {"": "file", "file": "file", "hdfs": "hdfs", "s3": "s3", "s3a": "s3"}


def _split(uri):
    uri = os.fspath(uri)
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    if scheme not in _SCHEMES:
        raise ValueError(f"{uri}: unsupported storage URI scheme {parts.scheme!r}; expected a plain path, "
                         f"file://, hdfs:// or s3:// (s3a://)")
    return scheme, parts


@functools.lru_cache(maxsize=32)
def _filesystem(kind, authority, query):
    if kind == "file":
        return pafs.LocalFileSystem()
    if kind == "s3":
        fs, _ = pafs.FileSystem.from_uri(urlunsplit(("s3", authority, "/", query, "")))
        return fs
    fs, _ = pafs.FileSystem.from_uri(urlunsplit(("hdfs", authority or "default", "/", query, "")))
    return fs


def redacted(uri):
    """`uri` without the password of its user part, for messages and logs."""
    uri = os.fspath(uri)
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def resolve(uri):
    """(pyarrow FileSystem, path inside it) for a URI or plain path.

    Example:
        fs, path = resolve("s3a://bucket/models/m1")  # S3FileSystem, "bucket/models/m1"
    """
    scheme, parts = _split(uri)
    kind = _SCHEMES[scheme]
    try:
        fs = _filesystem(kind, parts.netloc, parts.query)
    except (OSError, ValueError) as e:
        raise ValueError(f"{redacted(uri)}: cannot open its filesystem ({type(e).__name__}: {e})") from None
    if kind == "file":
        return fs, os.path.abspath(parts.path if scheme else os.fspath(uri))
    if kind == "s3":
        host = parts.hostname or ""
        return fs, (host + parts.path).rstrip("/")
    return fs, parts.path.rstrip("/") or "/"


def local_path(uri):
    """The absolute local path of a plain path or file:// URI, None for remote storage."""
    scheme, parts = _split(uri)
    if _SCHEMES[scheme] != "file":
        return None
    return os.path.abspath(parts.path if scheme else os.fspath(uri))


def renames_atomically(uri):
    """True where a folder can be committed by one rename (local, HDFS); False on object stores."""
    return _SCHEMES[_split(uri)[0]] != "s3"


def join(uri, *names):
    """`uri` with path components appended; the scheme, authority and query are kept.

    Example:
        join("s3://b/ckpt?scheme=http", "ckpt-1", "a.npz")  # "s3://b/ckpt/ckpt-1/a.npz?scheme=http"
    """
    uri = os.fspath(uri)
    scheme, parts = _split(uri)
    if not scheme:
        return os.path.join(uri, *names)
    path = posixpath.join(parts.path or "/", *names)
    return f"{parts.scheme}://{parts.netloc}{path}" + (f"?{parts.query}" if parts.query else "")


def basename(uri):
    """The last path component of a URI or path."""
    scheme, parts = _split(uri)
    return posixpath.basename((parts.path if scheme else os.fspath(uri)).rstrip("/"))


def dirname(uri):
    """The parent folder of a URI or path, in the same form."""
    uri = os.fspath(uri)
    scheme, parts = _split(uri)
    if not scheme:
        return os.path.dirname(os.path.abspath(uri))
    path = posixpath.dirname(parts.path.rstrip("/")) or "/"
    return f"{parts.scheme}://{parts.netloc}{path}" + (f"?{parts.query}" if parts.query else "")


def makedirs(uri):
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)


def _info(uri):
    fs, path = resolve(uri)
    return fs.get_file_info(path)


def exists(uri):
    return _info(uri).type != pafs.FileType.NotFound


def isdir(uri):
    return _info(uri).type == pafs.FileType.Directory


def isfile(uri):
    return _info(uri).type == pafs.FileType.File


def listdir(uri):
    """Sorted names directly under the folder `uri` ([] when it does not exist)."""
    fs, path = resolve(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(posixpath.basename(i.path.rstrip("/")) for i in infos)


def read_bytes(uri):
    """The whole content of the file `uri` (FileNotFoundError naming the URI when missing)."""
    fs, path = resolve(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{redacted(uri)}: no such file") from None
    except OSError as e:
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{redacted(uri)}: no such file") from None
        raise OSError(f"{redacted(uri)}: cannot read ({e})") from None


def write_bytes(uri, data):
    """Write `data` (bytes, or a function writing to a binary file) to `uri`.

    Local files are fsynced. Not atomic by itself: commit a folder with a rename or a marker.
    """
    local = local_path(uri)
    if local is not None:
        with open(local, "wb") as f:
            _fill(f, data)
            f.flush()
            os.fsync(f.fileno())
        return
    fs, path = resolve(uri)
    if callable(data):
        buffer = io.BytesIO()
        data(buffer)
        data = buffer.getvalue()
    with fs.open_output_stream(path) as f:
        f.write(data)


def _fill(f, data):
    if callable(data):
        data(f)
    else:
        f.write(data)


def move(src, dst):
    """Rename `src` to `dst` on the same filesystem (atomic only where `renames_atomically`)."""
    fs, a = resolve(src)
    _, b = resolve(dst)
    fs.move(a, b)


def remove_tree(uri, first=None):
    """Delete the folder `uri` if it exists; the file `first` in it goes before anything else.

    Pass the folder's commit marker as `first` so that a deletion cut short never leaves a
    partial folder that still looks committed.
    """
    fs, path = resolve(uri)
    if first is not None:
        marker = posixpath.join(path, first)
        if fs.get_file_info(marker).type == pafs.FileType.File:
            fs.delete_file(marker)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)


def upload_dir(local_dir, uri):
    """Copy the files under the local folder `local_dir` to the folder `uri` (created if missing)."""
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)
    for name in sorted(os.listdir(local_dir)):
        source = os.path.join(local_dir, name)
        if os.path.isdir(source):
            upload_dir(source, join(uri, name))
        else:
            with open(source, "rb") as f:
                write_bytes(join(uri, name), f.read())


def download_dir(uri, local_dir):
    """Copy the folder `uri` into the local folder `local_dir`."""
    os.makedirs(local_dir, exist_ok=True)
    for name in listdir(uri):
        source = join(uri, name)
        if isdir(source):
            download_dir(source, os.path.join(local_dir, name))
        else:
            with open(os.path.join(local_dir, name), "wb") as f:
                f.write(read_bytes(source))
