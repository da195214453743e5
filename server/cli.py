"""fer-server: the command line."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from ferstream.commandline import EXIT_USAGE, print_error

from .config import build_parser, config_from_args
from .heap import bound_heap

# Idle OpenMP threads sleep instead of spinning for milliseconds after each parallel region, which would
# take the cores the detection workers run on. The served runtimes keep their own pools quiet (ONNX Runtime
# with allow_spinning 0, OpenVINO's TBB sleeps); this covers OpenMP users loaded into the process (torch and
# oneDNN when a PyTorch model file is served). OpenMP reads it once when it starts, so it is set before any
# import; an operator's own setting wins. --replicas processes inherit it.
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}


def main(argv: list[str] | None = None) -> int:
    """fer-server: 0 after a clean stop, 1 when it cannot serve, 2 for bad arguments."""
    for name, value in WAIT_POLICY.items():
        os.environ.setdefault(name, value)
    bound_heap()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:  # one line, not argparse's usage block: the options parsed, their values did not
        print_error(parser.prog, f"{error} (see --help)")
        return EXIT_USAGE
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if config.replicas > 1:
        from .replicas import serve_replicas

        return serve_replicas(config)
    from .app import serve  # after parsing, so --help and argument errors do not wait for torch

    try:
        asyncio.run(serve(config))
    except (OSError, ValueError, RuntimeError) as error:
        logging.getLogger("ferstream.server").error("cannot serve: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
