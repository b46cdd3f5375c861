"""Run a child that may hang, and tell a hang apart from a slow start.

A fixed ``timeout=`` counts the child's imports (torch, sklearn, xgboost: seconds on a loaded
CI machine) into the time that proves a hang, so it has to be long. Here the child prints
:data:`GO` (flushed) just before the call that may never return; the hang is timed from that
line only, and the imports get their own, generous, limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

#: The line the child prints right before the call that may hang.
GO = "print('GO', flush=True)"


def run_or_hang(
    argv: Sequence[str],
    *,
    after: float = 4.0,
    startup: float = 240.0,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str] | None:
    """Run ``argv``; ``None`` if it is still running ``after`` seconds after its GO line (it
    hangs), else how it ended. A child that never prints GO is given ``startup`` seconds in all
    before it is killed and reported as hanging too."""
    with subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
    ) as proc:
        return _watch(proc, after, startup)


def _watch(
    proc: subprocess.Popen[str], after: float, startup: float
) -> subprocess.CompletedProcess[str] | None:
    out: list[str] = []
    err: list[str] = []
    went = threading.Event()

    def read_out() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if line.strip() == "GO":
                went.set()
        went.set()  # the child closed its output (it ended): nothing more to wait for

    def read_err() -> None:
        assert proc.stderr is not None
        err.append(proc.stderr.read())

    readers = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err)]
    for t in readers:
        t.start()
    try:
        if not went.wait(startup):
            raise subprocess.TimeoutExpired(proc.args, startup)
        proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    finally:
        for t in readers:  # the pipes close when the child is gone
            t.join(10)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(out), "".join(err))


def keras_loads_hang(paths: list[Path], tmp_path: Path, after: float = 4.0) -> dict[str, bool]:
    """Whether plain Keras (safe mode on) is still loading each file ``after`` seconds in: one
    child imports Keras once and forks a grandchild per file; results go through a file."""
    out = tmp_path / "hangs.json"
    code = f"""
import json, os, signal, time, warnings
warnings.simplefilter("ignore")
import keras
found = {{}}
for path in {[str(p) for p in paths]!r}:
    pid = os.fork()
    if pid == 0:
        try:
            keras.saving.load_model(path)
        except BaseException:
            pass
        os._exit(0)
    end = time.monotonic() + {after}
    while time.monotonic() < end and os.waitpid(pid, os.WNOHANG) == (0, 0):
        time.sleep(0.05)
    alive = os.waitpid(pid, os.WNOHANG) == (0, 0)
    if alive:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    found[path] = alive
with open({str(out)!r}, "w") as f:
    json.dump(found, f)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, bool] = json.loads(out.read_text())
    return found
