"""fer-server: the command line."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import sys

from ferstream.commandline import EXIT_USAGE, print_error

from .config import build_parser, config_from_args


# Idle OpenMP threads sleep instead of spinning for milliseconds after each parallel region, which would
# take the cores the detection workers run on. The served runtimes keep their own pools quiet (ONNX Runtime
# with allow_spinning 0, OpenVINO's TBB sleeps); this covers OpenMP users loaded into the process (torch and
# oneDNN when a PyTorch model file is served). OpenMP reads it once when it starts, so it is set before any
# import; an operator's own setting wins. --replicas processes inherit it.
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}

# glibc's mallopt parameter number for the size from which allocations get their own mapping (malloc.h).
M_MMAP_THRESHOLD = -3
# Blocks from 1 MiB up (a frame larger than 640x480, its copies, the detectors' buffers for it) get their own
# mapping, returned to the system when freed. glibc's default threshold rises to the largest block freed
# (up to 32 MiB), after which such blocks land in the heap and stay there: a burst of six 4K and 12 MP
# frames per detector left the server at 877 MB resident instead of 371; with this (and the detectors
# releasing their buffers) at 382.
MMAP_THRESHOLD_BYTES = 1 << 20


def bound_heap() -> None:
    """Fixes glibc's mmap threshold at MMAP_THRESHOLD_BYTES; nothing on other C libraries or when the
    operator set MALLOC_MMAP_THRESHOLD_ (their setting wins). --replicas processes call it themselves."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


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
