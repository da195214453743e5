"""The GPU recipe: the strongest teacher trained on one CUDA GPU in minutes, then distilled into the served
model on the CPU.

  teacher  (GPU)  fer-train on FER2013 with the full-width reference VGG (width 1.0, 13.1 M parameters,
                  about 16x the multiply-adds of the first shipped model), bf16 autocast, 60 epochs.
  student  (CPU)  fer-train --teacher TEACHER/best.pt: the served network (vgg x0.25, the widest whose
                  int8 form serves both views within 1.2 ms a face on AVX2, docs/performance.md),
                  continued from the served model file with --init, with the shipped last stage's
                  augmentation (training/recipes/light.toml) for 16 epochs.

Each stage is one fer-train command, run as a child process so its provenance records it verbatim; its
output (best.pt, final.pt, last.pt, metrics.csv/json, curves.png) goes to OUT/<stage>/, its log to
OUT/<stage>.log, and OUT/recipe.json gathers each stage's command, exit status, wall time and best
PublicTest epoch. A stage stopped part-way continues where it stopped when run again (--resume).

Sizing, estimated, not yet measured on a GPU: the CPU side of a step and kernel launches dominate, so
the teacher's 60 epochs should take minutes (docs/performance.md#design-measurements). --smoke runs both
stages on the CPU on a few hundred images for one epoch (the test suite runs it).

  python -m ferstream.training.gpu_recipe --out runs/gpu                    # the teacher, on the GPU
  python -m ferstream.training.gpu_recipe --out runs/gpu --stage student    # distillation, on the CPU
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from ferstream.model.modelfile import SHIPPED_MODEL
from ferstream.commandline import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CommandParser,
                                   add_version_argument, print_error)
from ferstream.pipeline.settings import default_data_dir

PROG = "python -m ferstream.training.gpu_recipe"
STAGES = ("teacher", "student", "both")
# The teacher: the reference VGG at full width (dropout 0.3 as ArchSpec's reference default), the CPU
# recipe's schedule otherwise (batch 128, peak lr 0.05, label smoothing 0.1, EMA 0.999).
TEACHER = ["--arch", "vgg", "--width", "1.0", "--dropout", "0.3", "--epochs", "60", "--batch-size", "128",
           "--lr", "0.05", "--erase-probability", "0.5", "--seed", "0", "--precision", "bf16", "--device", "cuda"]
# The student: the shipped last stage's recipe (training/recipes/light.toml) at twice its learning rate over
# 16 epochs, as the CPU distillation from the wider teacher ran (docs/history.md), plus the distillation
# term at fer-train's defaults.
STUDENT = ["--width", "0.25", "--dropout", "0.1", "--lr", "0.01", "--epochs", "16", "--erase-probability", "0.25",
           "--label-smoothing", "0", "--max-rotation", "15", "--seed", "23", "--distill-weight", "0.5",
           "--temperature", "4", "--device", "cpu"]
# --smoke: a few hundred images, one epoch, on the CPU, in fp32.
SMOKE = ["--epochs", "1", "--limit", "256", "--val-limit", "64", "--batch-size", "32", "--device", "cpu",
         "--precision", "fp32"]


def default_data() -> str:
    """FER2013 under $FER_DATA_DIR (the shared data folder), else under ../shared."""
    return str(default_data_dir() / "datasets" / "fer2013")


def stage_argv(stage: str, data: str, out: Path, student_init: str, smoke: bool) -> list[str]:
    """The fer-train arguments of a stage (every option takes a value); with smoke, SMOKE's values replace
    the stage's own."""
    if stage == "teacher":
        argv = ["--data", data, "--out", str(out / "teacher"), *TEACHER]
    else:
        argv = ["--data", data, "--out", str(out / "student"), "--init", student_init,
                "--teacher", str(out / "teacher" / "best.pt"), *STUDENT]
    options = dict(zip(argv[::2], argv[1::2]))
    if smoke:
        options |= dict(zip(SMOKE[::2], SMOKE[1::2]))
    return [item for pair in options.items() for item in pair]


def run_stage(stage: str, argv: list[str], out: Path) -> dict:
    """Run `fer-train ARGV` (continuing a stage stopped part-way); its stderr also goes to OUT/<stage>.log.

    Returns {"argv", "returncode", "wall_seconds", "result"}: result is fer-train's last stdout line
    (best epoch and PublicTest accuracy) parsed, or None when it failed.
    """
    last = Path(argv[argv.index("--out") + 1]) / "last.pt"
    if last.is_file():
        argv = ["--out", str(last.parent), "--resume"]
    command = [sys.executable, "-m", "ferstream.training.train", *argv]
    print(f"{PROG}: {stage}: fer-train {' '.join(argv)}", file=sys.stderr)
    started = time.monotonic()
    with open(out / f"{stage}.log", "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in process.stderr:  # fer-train draws no progress bars into a pipe: one line per epoch
            sys.stderr.write(line)
            log.write(line)
        stdout = process.stdout.read()
        returncode = process.wait()
    lines = stdout.strip().splitlines()
    return {"argv": argv, "returncode": returncode, "wall_seconds": round(time.monotonic() - started, 1),
            "result": json.loads(lines[-1]) if returncode == 0 and lines else None}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen stages; 0 when all succeeded, 1 when one failed, 2 bad usage, 130 on Ctrl-C."""
    parser = CommandParser(prog=PROG, description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=default_data(),
                        help="FER2013 (any layout fer-train reads) (default: $FER_DATA_DIR/datasets/fer2013, "
                             "else ../shared/datasets/fer2013)")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu"),
                        help="output folder: teacher/, student/, their logs and recipe.json (default: runs/gpu)")
    parser.add_argument("--stage", choices=STAGES, default="teacher",
                        help="teacher: train the teacher on the GPU; student: distil it into the served width "
                             "on the CPU; both: one after the other (default: teacher)")
    parser.add_argument("--student-init", default=str(SHIPPED_MODEL),
                        help="model file the student starts from (default: the shipped model)")
    parser.add_argument("--smoke", action="store_true",
                        help="both stages on the CPU, a few hundred images, one epoch: checks the recipe, "
                             "trains nothing useful")
    add_version_argument(parser)
    args = parser.parse_args(argv)
    import torch  # after --help and --version, which should answer at once

    stages = ["teacher", "student"] if args.stage == "both" else [args.stage]
    if "teacher" in stages and not args.smoke and not torch.cuda.is_available():
        print_error(PROG, "the teacher stage needs a CUDA GPU (torch sees none); --smoke runs it on the CPU")
        return EXIT_USAGE
    args.out.mkdir(parents=True, exist_ok=True)
    report_path = args.out / "recipe.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    try:
        for stage in stages:
            started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            outcome = run_stage(stage, stage_argv(stage, args.data, args.out, args.student_init, args.smoke),
                                args.out)
            report[stage] = {"started": started, **outcome,
                             "device": torch.cuda.get_device_name() if stage == "teacher" and not args.smoke
                             else "cpu"}
            report_path.write_text(json.dumps(report, indent=1))
            if outcome["returncode"] != 0:
                print_error(PROG, f"{stage} failed (exit {outcome['returncode']}); see {args.out / (stage + '.log')}")
                return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(json.dumps(report))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
