"""`python -m bench`: the command line. Each subcommand lives in bench/commands/<name>.py.

Subcommand modules import nothing heavy at module level, so `python -m bench list` stays
instant and a GBDT run never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("list", "run", "data", "report", "latency", "throughput", "gbdt", "tune", "accuracy",
            "compare", "study")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="ccpbench: GBDT vs neural multi-task ranking models on Ali-CCP.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"bench.commands.{name.replace('-', '_')}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args, argv) or 0)
    except (ValueError, FileNotFoundError, KeyError) as error:
        # Bad input and bad options end with one clear line, not a traceback.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2
