"""README.md as a user meets it: its Python blocks run as pasted, its shell commands name real things.

The Python blocks run in order, unchanged, in one fresh interpreter started in an empty
folder (the data they use is made by the blocks themselves). Shell lines that a user runs
(`make ...`, `spark-submit ...`, `python -m ...`) must name Make targets, files and options
that exist.
"""
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from bigdl_py.testing import numeric_grad

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")

# Runs each block with exec in one namespace and says which block it is in, so a failure names it.
RUNNER = """
import json, sys, traceback
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for number, (line, source) in enumerate(blocks, 1):
    print(f"README block {number} (README.md line {line})", flush=True)
    code = compile("\\n" * (line - 1) + source, "README.md", "exec")
    exec(code, namespace)
print("all README blocks ran", flush=True)
"""


def fenced_blocks(language):
    """(first line number, source) of each ```<language> block; language "" is a bare fence."""
    text = open(README).read()
    blocks = []
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        if m.group(1) == language:
            blocks.append((text[:m.start(2)].count("\n") + 1, m.group(2)))
    return blocks


def readme_layer_class():
    """The Scale class of "Write your own layer", defined by the block's own lines (without its training)."""
    section = re.search(r"## Write your own layer in Python.*?```python\n(.*?)```", open(README).read(), re.S)
    definition = section.group(1).split("\nmodel = ")[0]
    namespace = {}
    exec(compile(definition, "README.md", "exec"), namespace)
    return namespace["Scale"]


def test_readme_is_short_and_keeps_history_in_docs():
    lines = open(README).read().splitlines()
    assert len(lines) <= 279, f"README.md has {len(lines)} lines; history and sweeps belong in docs/BENCHMARKS.md"
    assert os.path.exists(os.path.join(REPO, "docs", "BENCHMARKS.md"))


@pytest.mark.slow
@pytest.mark.spark
def test_python_blocks_run_as_pasted_in_a_fresh_interpreter(tmp_path):
    blocks = fenced_blocks("python")
    assert len(blocks) >= 5
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "runner.py").write_text(RUNNER)
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_GATEWAY")}
    env["PYTHONPATH"] = ""  # the installed package, as a user has it, not this checkout's tests
    proc = subprocess.run([sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "blocks.json")],
                          cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert "all README blocks ran" in proc.stdout
    top1 = [float(v) for v in re.findall(r"test top-1 after \d epochs?: ([0-9.]+)", proc.stdout)]
    assert len(top1) == 2 and min(top1) > 0.8, proc.stdout  # both MNIST examples learn
    auc = float(re.search(r"AUC: ([0-9.]+)", proc.stdout).group(1))
    assert auc > 0.7, proc.stdout
    parity = float(re.search(r"even/odd accuracy: ([0-9.]+)", proc.stdout).group(1))
    assert parity > 0.9, proc.stdout  # the new head on the imported, frozen LeNet-5 learns its task
    assert (work / "models" / "credit").is_dir() and (work / "lenet5" / "config.json").exists()
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(work / "runs" / "lenet5"))


def shell_commands():
    """Each command line of the README's bare ``` blocks, split into words, comments dropped."""
    for _, block in fenced_blocks(""):
        for line in block.splitlines():
            line = re.sub(r"(^|\s)#.*", "", line).replace("[", " ").replace("]", " ")  # as a shell reads `#`
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
            lexer.commenters, lexer.wordchars = "", lexer.wordchars + "#"
            words = []
            for token in list(lexer) + [";"]:
                if token in (";", "&&", "||", "|"):
                    if words:
                        yield words
                    words = []
                else:
                    words.append(token)


def make_targets():
    text = open(os.path.join(REPO, "Makefile")).read()
    return set(re.findall(r"^([A-Za-z][\w.-]*):", text, re.M))


def spark_submit_options():
    spark_submit = os.path.join(os.path.dirname(sys.executable), "spark-submit")
    out = subprocess.run([spark_submit, "--help"], capture_output=True, text=True, timeout=120)
    return set(re.findall(r"(--[a-z][\w-]*)", out.stdout + out.stderr))


def script_help(script, args):
    """--help of a script (and of its sub-command, if the first argument names one)."""
    sub = [args[0]] if args and not args[0].startswith("-") else []
    out = subprocess.run([sys.executable, script] + sub + ["--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, f"{script} {' '.join(sub)} --help failed: {out.stderr[-2000:]}"
    return out.stdout


def test_shell_commands_name_targets_files_and_options_that_exist(tmp_path):
    checked = []
    submit_options = None
    for words in shell_commands():
        program, args = words[0], words[1:]
        if program == "make":
            assert set(args) <= make_targets(), f"README: `make {' '.join(args)}`: no such Make target"
            checked.append(words)
        elif program == "spark-submit":
            submit_options = submit_options or spark_submit_options()
            script_at = next(i for i, a in enumerate(args) if a.endswith(".py"))
            for option in (a for a in args[:script_at] if a.startswith("--")):
                assert option in submit_options, f"README: spark-submit has no option {option}"
            script, script_args = args[script_at], args[script_at + 1:]
            assert os.path.exists(os.path.join(REPO, script)), f"README: spark-submit of missing file {script}"
            help_text = script_help(script, script_args)
            for option in (a.split("=")[0] for a in script_args if a.startswith("--")):
                assert re.search(rf"{re.escape(option)}(?![\w-])", help_text), f"README: {script} has no option {option}"
            checked.append(words)
        elif program == "python" and args[:1] == ["-m"] and not args[1].startswith("venv"):
            module = args[1]
            spec = subprocess.run([sys.executable, "-c", f"import importlib.util as u; "
                                   f"assert u.find_spec({module!r}), {module!r}"], capture_output=True, timeout=120)
            assert spec.returncode == 0, f"README: python -m {module}: no such module"
            checked.append(words)
        elif program == "python" and args[:1] == ["-c"]:
            run = subprocess.run([sys.executable] + args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, f"README: `python -c {args[1]}` failed: {run.stderr[-2000:]}"
            checked.append(words)
    programs = {w[0] for w in checked}
    assert {"make", "spark-submit", "python"} <= programs, checked


def test_custom_layer_backward_matches_finite_differences():
    Scale = readme_layer_class()
    layer = Scale(3)
    layer.params["w"][:] = [0.5, -2.0, 3.0]
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    r = np.random.default_rng(1).standard_normal((4, 3))
    layer.forward(x)
    dx = layer.backward(x, r.astype(np.float32))
    np.testing.assert_allclose(dx, numeric_grad(lambda v: (v * layer.params["w"] * r).sum(), x), rtol=1e-3)
    w0 = layer.params["w"].astype(np.float64)
    np.testing.assert_allclose(layer.grads["w"], numeric_grad(lambda w: (x * w * r).sum(), w0), rtol=1e-3)


def test_custom_layer_trains_saves_and_loads_inside_a_model(tmp_path):
    from bigdl_py.engine.local import LocalOptimizer
    from bigdl_py.nn import Linear, MSELoss, Sequential, load_model, save_model
    from bigdl_py.optim import SGD, MaxIteration

    Scale = readme_layer_class()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = x * np.array([2.0, -1.0, 0.5], np.float32)
    model = Sequential(Scale(3), Linear(3, 3))
    before = float(MSELoss().forward(model.forward(x), y))
    LocalOptimizer(model, MSELoss(), SGD(), x, y, batch_size=16, end_trigger=MaxIteration(200),
                   learning_rate=0.05).set_progress(False).optimize()
    after = float(MSELoss().forward(model.forward(x), y))
    assert after < 0.1 * before
    save_model(model, str(tmp_path / "m"))
    np.testing.assert_array_equal(load_model(str(tmp_path / "m")).forward(x), model.forward(x))
