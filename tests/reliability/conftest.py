"""Reliability tests run bounded in CI; MODELSTORE_FULL=1 runs the full counts by hand
(python tests/reliability/run_full.py). Figures go to MODELSTORE_RELIABILITY_REPORT if set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FULL = os.environ.get("MODELSTORE_FULL") == "1"
WORKERS = Path(__file__).with_name("workers.py")


def count(ci: int, full: int) -> int:
    return full if FULL else ci


def record(section: str, figures: dict[str, Any]) -> None:
    """Add figures to the report file (JSON lines), for docs/reliability.md."""
    target = os.environ.get("MODELSTORE_RELIABILITY_REPORT")
    if target:
        with open(target, "a") as f:
            f.write(json.dumps({"section": section, **figures}) + "\n")


def spawn(*args: str, stdin: Any = None, stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, str(WORKERS), *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    )


class Forker:
    """A process that has imported a family's framework once and forks each writer from there
    (``workers.forker``): a writer is up and saving at once, instead of after seconds of
    imports, and is a real process that ``kill`` ends with SIGKILL."""

    def __init__(self, family: str, log: Path) -> None:
        self.log = log
        with open(log, "w") as err:
            self.proc = spawn("forker", family, stdin=subprocess.PIPE, stderr=err)

    def writer(self, *args: str) -> Forked:
        """Fork a ``workers.writer(*args)``; returns once it is running."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(args) + "\n")
        self.proc.stdin.flush()
        word, pid = self.proc.stdout.readline().split()
        assert word == "pid", self.stderr()
        return Forked(self, int(pid))

    def stderr(self) -> str:
        return self.log.read_text()[-3000:]

    def close(self) -> None:
        self.proc.kill()
        self.proc.communicate()


class Forked:
    """One forked writer: its output lines, read through the forker's stdout."""

    def __init__(self, forker: Forker, pid: int) -> None:
        self.forker, self.pid = forker, pid
        self.exited = False

    def readline(self) -> str:
        """The writer's next line; '' once it has exited (the forker's 'exit' line). A line
        the writer was killed in the middle of ends where the forker's 'exit' begins."""
        assert self.forker.proc.stdout is not None
        if self.exited:
            return ""
        line = self.forker.proc.stdout.readline()
        assert line, f"the forker died: {self.forker.stderr()}"
        head, sep, _ = line.partition("exit ")
        if sep:
            self.exited = True
            return head + "\n" if head else ""
        return line

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def communicate(self) -> str:
        """Everything the writer printed after the lines already read, once it has exited."""
        lines = []
        while line := self.readline():
            lines.append(line)
        return "".join(lines)


@pytest.fixture
def need() -> Any:
    def _need(family: str) -> None:
        module = {"safetensors": "torch", "torch": "torch", "sklearn": "sklearn", "keras": "keras"}[
            family
        ]
        pytest.importorskip(module)

    return _need
