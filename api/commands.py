"""The installed fer-* commands' entry points (pyproject.toml [project.scripts]).

Each starts its command through run_command, which answers `--version` before the command's module is
imported (fer-train's imports torch: seconds) and ends quietly when the reader of stdout goes away.
"""

from __future__ import annotations

from ferstream.commandline import run_command

# Every command and the module that runs it: its main(argv) runs the command, its build_parser() gives the
# command's argparse parser (--help, and docs/usage.md through ferstream.usage).
COMMANDS = {
    "fer-server": "ferstream.server.cli",
    "fer-client": "ferstream.client.cli",
    "fer-annotate": "ferstream.annotate_command",
    "fer-web": "ferstream.web.cli",
    "fer-models": "ferstream.pipeline.models_cli",
    "fer-bench": "ferstream.bench.cli",
    "fer-train": "ferstream.training.train",
    "fer-eval": "ferstream.training.evaluate",
    "fer-eval-path": "ferstream.training.fullpath",
    "fer-ckplus": "ferstream.training.ckplus",
    "fer-export": "ferstream.training.export",
}


def fer_server() -> int:
    return run_command("fer-server", COMMANDS["fer-server"])


def fer_client() -> int:
    return run_command("fer-client", COMMANDS["fer-client"])


def fer_annotate() -> int:
    return run_command("fer-annotate", COMMANDS["fer-annotate"])


def fer_web() -> int:
    return run_command("fer-web", COMMANDS["fer-web"])


def fer_models() -> int:
    return run_command("fer-models", COMMANDS["fer-models"])


def fer_bench() -> int:
    return run_command("fer-bench", COMMANDS["fer-bench"])


def fer_train() -> int:
    return run_command("fer-train", COMMANDS["fer-train"])


def fer_eval() -> int:
    return run_command("fer-eval", COMMANDS["fer-eval"])


def fer_eval_path() -> int:
    return run_command("fer-eval-path", COMMANDS["fer-eval-path"])


def fer_ckplus() -> int:
    return run_command("fer-ckplus", COMMANDS["fer-ckplus"])


def fer_export() -> int:
    return run_command("fer-export", COMMANDS["fer-export"])
