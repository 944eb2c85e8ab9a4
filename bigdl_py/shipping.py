"""Make bigdl_py importable on executors that do not have it installed.

On a real cluster the executors' Python may lack bigdl_py. Before training we run
one tiny task per core that tries the import (which also starts the Python workers
and loads the package once, before anything is timed); if it fails, the package (with its kernels and
pipelines folders mapped to bigdl_py.kernels / bigdl_py.pipelines, as installed) is
zipped and shipped with SparkContext.addPyFile. Its dependencies (numpy, numba,
pyarrow) must be on the executors already: the README shows `--archives` with a
packed virtualenv for that case.
"""
import os
import tempfile
import zipfile

_SHIPPED = set()  # SparkContext ids that already got the zip


def _import_probe():
    """A task function that reports why bigdl_py cannot be imported (None: it can).

    Made here, not defined at module level: cloudpickle sends a module-level function as a
    reference to its module, which an executor without bigdl_py cannot unpickle; a nested
    function travels by value.
    """
    def probe(_):
        try:
            import bigdl_py.kernels  # noqa: F401
            import bigdl_py.nn  # noqa: F401
            return [None]
        except Exception as e:  # the executor reports why, the driver decides
            return [f"{type(e).__name__}: {e}"]
    return probe


def package_zip(path=None):
    """Zip bigdl_py as executors must import it; returns the zip's path."""
    import bigdl_py
    import bigdl_py.kernels
    import bigdl_py.pipelines

    roots = {"bigdl_py": bigdl_py.__path__[0], "bigdl_py/kernels": bigdl_py.kernels.__path__[0],
             "bigdl_py/pipelines": bigdl_py.pipelines.__path__[0]}
    path = path or os.path.join(tempfile.mkdtemp(prefix="bigdl_py-ship-"), "bigdl_py.zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for prefix, folder in roots.items():
            for dirpath, dirnames, filenames in os.walk(folder):
                dirnames[:] = [d for d in dirnames if d != "__pycache__"]
                rel = os.path.relpath(dirpath, folder)
                for name in filenames:
                    if name.endswith(".py"):
                        arc = os.path.normpath(os.path.join(prefix, rel, name))
                        z.write(os.path.join(dirpath, name), arc)
    return path


def _import_errors(sc):
    """Why each core's probe task could not import bigdl_py (empty: all could)."""
    cores = max(1, sc.defaultParallelism)
    return [e for e in sc.parallelize(range(cores), cores).mapPartitions(_import_probe()).collect() if e]


def ensure_importable_on_executors(sc):
    """Ship bigdl_py to the executors if a probe task cannot import it.

    Raises a RuntimeError that says what to do if even the shipped copy fails
    (typically: numpy/numba/pyarrow missing on the executors).
    """
    if id(sc) in _SHIPPED:
        return
    errors = _import_errors(sc)
    if errors:
        sc.addPyFile(package_zip())
        errors = _import_errors(sc)
        if errors:
            raise RuntimeError(
                f"executors cannot import bigdl_py even after shipping it ({errors[0]}); install numpy, numba and "
                f"pyarrow there, or submit with a packed environment: spark-submit --archives "
                f"bigdl_env.tar.gz#env --conf spark.pyspark.python=./env/bin/python ...")
    _SHIPPED.add(id(sc))
