"""The installed import names resolve into this repository."""
import os
import tomllib

import bigdl_py
import bigdl_py.kernels
import bigdl_py.pipelines

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_kernels_and_pipelines_import_from_this_repo():
    assert os.path.dirname(bigdl_py.kernels.__file__) == os.path.join(REPO, "kernels")
    assert os.path.dirname(bigdl_py.pipelines.__file__) == os.path.join(REPO, "pipelines")
    assert os.path.dirname(bigdl_py.__file__) == os.path.join(REPO, "bigdl_py")


def test_every_package_folder_is_listed_in_pyproject():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    mapping = {"kernels": "bigdl_py.kernels", "pipelines": "bigdl_py.pipelines"}
    found = set()
    for top in ("bigdl_py", "kernels", "pipelines"):
        for folder, _, files in os.walk(os.path.join(REPO, top)):
            if "__init__.py" in files:
                rel = os.path.relpath(folder, REPO).split(os.sep)
                found.add(".".join([mapping.get(rel[0], rel[0])] + rel[1:]))
    assert found == listed
