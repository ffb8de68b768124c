"""The ``yolo-ft`` command line: a thin layer that parses flags and calls the library.

Each stage registers its own subcommands from ``yolo_ft/<stage>/cli.py`` (a ``register``
function taking the argparse subparsers). Those modules import only argparse at import time,
so ``yolo-ft --help`` is fast and heavy libraries load only for the command that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from yolo_ft import __version__
from yolo_ft.records import YoloFtError

# Modules that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES = (
    "yolo_ft.prepare.cli",
    "yolo_ft.train.cli",
    "yolo_ft.train.weights_cli",
    "yolo_ft.export.cli",
    "yolo_ft.review.cli",
    "yolo_ft.evaluate",
    "yolo_ft.pipeline",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolo-ft",
        description="Fine-tune YOLO11 on a small labelled image set: prepare, train, review, export.",
    )
    parser.add_argument("--version", action="version", version=f"yolo-ft {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:  # a stage not installed in this build
            if e.name and e.name.startswith("yolo_ft"):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if _raised_by_interrupt(e):
            print("interrupted", file=sys.stderr)
            return 130
        if args.verbose or not isinstance(e, (YoloFtError, FileExistsError, FileNotFoundError, PermissionError)):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return int(result or 0)


def _raised_by_interrupt(e: BaseException) -> bool:
    """True when a Ctrl-C caused ``e``: a KeyboardInterrupt that lands inside library code (a thread pool's
    lock, measured in CI: ``RuntimeError: release unlocked lock``) surfaces as another error chained to it."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


if __name__ == "__main__":
    raise SystemExit(main())
