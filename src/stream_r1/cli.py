"""The `stream-r1` command line: one subcommand per job, each a thin wrapper over the library."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .checkpoint import CheckpointError
from .config import ConfigError, load_config
from .toyworld.prompts import PromptError

USER_ERRORS = (CheckpointError, ConfigError, PromptError, FileNotFoundError)


def cmd_pretrain(args: argparse.Namespace) -> None:
    from .pretrain import pretrain

    config = load_config(args.config, args.set)
    path = pretrain(config, Path(args.out), resume=args.resume)
    print(f"teacher weights: {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stream-r1", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="train the bidirectional toy teacher with flow matching")
    p.add_argument("--config", default="toy-teacher", help="YAML path or packaged config name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--out", required=True, help="run directory (checkpoints, TensorBoard, weights)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    p.set_defaults(func=cmd_pretrain)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except USER_ERRORS as err:
        print(f"stream-r1 {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
