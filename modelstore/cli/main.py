"""The ``modelstore`` command: a thin shell over the public API, one module per subcommand.

Exit codes: 0 ok, 1 refused or unsafe, 2 usage error or bad input.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from .._version import __version__
from ..errors import ModelstoreError, SignatureError, UnsafeModelError
from . import convert, evaluate, inspect, predict, quantize, scan, serve, sign, store, summary

COMMANDS = (inspect, scan, convert, quantize, predict, serve, store, sign, summary, evaluate)


def _sub(sub: Any, name: str, help_text: str, epilog: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelstore",
        description="Save, load, inspect, run and convert "
        "model files safely. Exit codes: 0 ok, 1 refused or unsafe, 2 error.",
    )
    parser.add_argument("--version", action="version", version=f"modelstore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub, _sub)
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args, out)
    except BrokenPipeError:  # `modelstore inspect x | head`: the reader left, that is fine
        sys.stderr.close()
        return 0
    except (UnsafeModelError, SignatureError) as e:
        sys.stderr.write(f"modelstore: refused: {e}\n")
        return 1
    except ModelstoreError as e:
        sys.stderr.write(f"modelstore: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: still one line, never a traceback
        sys.stderr.write(
            f"modelstore: internal error: {type(e).__name__}: {e} (please report it)\n"
        )
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
