"""Many ``modelstore`` command lines in one child process, each checked as if it had run alone.

Starting ``python -m modelstore`` once per hostile file costs an interpreter and the
framework imports every time (a minute for a corpus). :func:`run` starts one child that runs
each command line through the CLI's own entry point, ``modelstore.cli.main``, exactly as
``python -m modelstore`` does (``sys.exit(main())``), and gives back for each its exit status
and what it wrote on file descriptors 1 and 2 (so output written by native code is caught
too). An exception that escapes ``main`` is printed as a traceback with status 1, as the
interpreter would; the warning filters and their "already shown" registries are reset between
commands, so each command shows its warnings as a fresh process would. A signal that kills the
child fails the test: a crash in any command is a crash.

Tests that check the console script itself (the ``modelstore`` entry point, ``python -m``)
keep starting it as a real subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Result:
    """One command's outcome, with the fields of ``subprocess.CompletedProcess`` tests read."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run(
    commands: list[list[str]], *, env: dict[str, str] | None = None, timeout: float = 600
) -> list[Result]:
    """Run each ``modelstore`` command line (without the program name) in one child process."""
    env = dict(env if env is not None else os.environ)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    with tempfile.TemporaryDirectory(prefix="modelstore-cli-batch-") as tmp:
        request, answer = Path(tmp) / "commands.json", Path(tmp) / "results.json"
        request.write_text(json.dumps(commands))
        proc = subprocess.run(
            [sys.executable, "-m", "tests.cli_batch", str(request), str(answer)],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        assert proc.returncode == 0 and answer.exists(), (
            f"the CLI batch child died (exit {proc.returncode}) during its commands:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
        results = json.loads(answer.read_text())
    assert len(results) == len(commands)
    return [Result(args, *r) for args, r in zip(commands, results)]


def _one(argv: list[str], out: int, err: int) -> int:
    """``python -m modelstore ARGV`` with fds 1 and 2 pointing at ``out`` and ``err``."""
    import traceback
    import warnings

    from modelstore.cli import main

    saved = os.dup(1), os.dup(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out, 1)
    os.dup2(err, 2)
    try:
        code: Any = main(argv)
    except SystemExit as e:  # argparse's usage errors and --help
        code = e.code
    except BaseException:  # what would reach the interpreter's top level
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        # the interpreter's filters again, and every "already shown" registry forgotten
        warnings.filters[:] = _FILTERS
        warnings.onceregistry.clear()  # type: ignore[attr-defined]
        warnings._filters_mutated()  # type: ignore[attr-defined]
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message"), as the interpreter prints it
    return 1


_FILTERS: list[Any] = []


def _child(request: Path, answer: Path) -> None:
    import warnings

    _FILTERS.extend(warnings.filters)
    results = []
    with tempfile.TemporaryDirectory(prefix="modelstore-cli-out-") as tmp:
        for i, argv in enumerate(json.loads(request.read_text())):
            out_path, err_path = Path(tmp) / f"{i}.out", Path(tmp) / f"{i}.err"
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                code = _one(argv, out.fileno(), err.fileno())
            results.append(
                [
                    code,
                    out_path.read_bytes().decode(errors="replace"),
                    err_path.read_bytes().decode(errors="replace"),
                ]
            )
    answer.write_text(json.dumps(results))


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]))
