"""python -m fakenvml build|example: build the library, write an example scenario."""

from __future__ import annotations

import argparse
import sys

from fakenvml.build import BuildError, build_library
from fakenvml.example import example_scenario
from fakenvml.scenario import ScenarioError


def _pid_list(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of pids: {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fakenvml", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="compile libnvidia-ml.so.1 into --out")
    build.add_argument("--out", required=True, help="directory for the library")
    build.add_argument(
        "--omit", action="append", default=[], metavar="NAME", help="leave this symbol out"
    )
    example = commands.add_parser("example", help="write an example scenario file")
    example.add_argument("--gpus", type=int, default=2)
    example.add_argument("--processes", type=int, default=10)
    example.add_argument("--users", type=int, default=5)
    example.add_argument("--pids", type=_pid_list, help="comma-separated pids to use")
    example.add_argument("--seed", type=int, default=0)
    example.add_argument("--out", required=True, help="scenario file to write")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(build_library(args.out, omit=args.omit) / "libnvidia-ml.so.1")
        else:
            scenario = example_scenario(
                args.gpus, args.processes, args.users, pids=args.pids, seed=args.seed
            )
            print(scenario.write(args.out))
    except (BuildError, ScenarioError, ValueError, OSError) as e:
        print(f"fakenvml: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
