"""fer-server: the command line."""

from __future__ import annotations

import asyncio
import logging
import sys

from .config import build_parser, config_from_args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if config.workers > 1:
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
