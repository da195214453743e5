"""The installed fer-* commands' entry points (pyproject.toml [project.scripts]).

Each starts its command through run_command, which answers `--version` before the command's module is
imported (fer-train's imports torch: seconds) and ends quietly when the reader of stdout goes away.
"""

from __future__ import annotations

from ferstream.pipeline.commandline import run_command


def fer_server() -> int:
    return run_command("fer-server", "ferstream.server.cli")


def fer_client() -> int:
    return run_command("fer-client", "ferstream.client.cli")


def fer_models() -> int:
    return run_command("fer-models", "ferstream.pipeline.models_cli")


def fer_bench() -> int:
    return run_command("fer-bench", "ferstream.bench.cli")


def fer_train() -> int:
    return run_command("fer-train", "ferstream.training.train")


def fer_eval() -> int:
    return run_command("fer-eval", "ferstream.training.evaluate")


def fer_export() -> int:
    return run_command("fer-export", "ferstream.training.export")


def fer_ckplus() -> int:
    return run_command("fer-ckplus", "ferstream.training.ckplus")


def fer_eval_path() -> int:
    return run_command("fer-eval-path", "ferstream.training.fullpath")


def fer_web() -> int:
    return run_command("fer-web", "ferstream.web.cli")


def fer_annotate() -> int:
    return run_command("fer-annotate", "ferstream.annotate_command")
