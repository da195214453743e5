"""Recipe files (fer-train --config): every key is an option, flags override the file, a bad file is one error
line, and the recipes in training/recipes replay the shipped model's recorded chain (`make train` runs them)."""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict
from pathlib import Path

import pytest

from ferstream.model.modelfile import load_model
from ferstream.training.provenance import chain_recipes, main as provenance_main
from ferstream.training.recipe import RecipeError, read_recipe
from ferstream.training.train import TrainConfig, main as train_main, option_types, parse_args

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "training" / "recipes"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.toml")), ids=lambda path: path.stem)
def test_every_recipe_file_reads_as_fer_train_options(recipe: Path) -> None:
    run = parse_args(["--config", str(recipe)])
    assert run.recipe is not None and run.recipe.settings
    assert run.given == set(run.recipe.settings) - {"resume", "stop_after"}


def test_the_file_sets_options_and_flags_given_too_override_it(tmp_path: Path) -> None:
    recipe = write(tmp_path, 'out = "runs/x"\nwidth = 0.5\nlr = 1\nstandardize = false\nstop_after = 3\n')
    run = parse_args(["--config", recipe])
    assert (run.config.out, run.config.width, run.config.lr, run.config.standardize, run.stop_after) == \
        ("runs/x", 0.5, 1.0, False, 3)
    assert isinstance(run.config.lr, float)
    assert run.config.seed == TrainConfig().seed  # what the file leaves out keeps its default
    run = parse_args(["--lr", "0.2", "--config", recipe, "--standardize", "--stop-after", "0"])
    assert (run.config.out, run.config.lr, run.config.standardize, run.stop_after) == ("runs/x", 0.2, True, 0)


@pytest.mark.parametrize(("text", "message"), [
    ("lr = 0.1\nfoo = 1\n", "unknown key 'foo'"),
    ("erase-probability = 0.25\n", "unknown key 'erase-probability'; keys are options' names with underscores: "
                                   "erase_probability"),
    ("[schedule]\nepochs = 3\n", "unknown key 'schedule'"),
    ('lr = "fast"\n', "lr must be a number, got 'fast'"),
    ("epochs = 2.5\n", "epochs must be an integer, got 2.5"),
    ("seed = true\n", "seed must be an integer, got True"),
    ("standardize = 0\n", "standardize must be true or false, got 0"),
    ('precision = "fp16"\n', "precision must be one of auto, fp32, bf16, got 'fp16'"),
    ("lr = \n", "not a TOML file"),
])
def test_a_bad_recipe_is_one_error_line_naming_the_file_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                   text: str, message: str) -> None:
    recipe = write(tmp_path, text)
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--config", recipe, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"fer-train: error: {recipe}: ") and message in line, line
    assert not (tmp_path / "out").exists()


def test_a_missing_recipe_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--config", str(tmp_path / "absent.toml")])
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"{tmp_path / 'absent.toml'}: cannot read the recipe" in line


def test_flags_given_with_resume_are_refused_but_the_recipe_may_repeat_the_run_s_settings(tmp_path: Path) -> None:
    recipe = write(tmp_path, 'out = "runs/x"\nwidth = 0.5\nresume = true\n')
    assert parse_args(["--config", recipe]).resume  # train() checks the settings against the checkpoint's
    with pytest.raises(SystemExit):
        parse_args(["--config", recipe, "--lr", "0.1"])


def test_recipe_read_keeps_path_text_and_digest(tmp_path: Path) -> None:
    recipe = read_recipe(write(tmp_path, "lr = 0.5  # peak\n"), option_types())
    assert recipe.settings == {"lr": 0.5}
    assert recipe.record() == {"path": str(tmp_path / "recipe.toml"), "sha256": recipe.sha256,
                               "text": "lr = 0.5  # peak\n"}
    with pytest.raises(RecipeError):
        read_recipe(write(tmp_path, "lr = 0.5\nlr = 0.6\n"), option_types())  # TOML forbids a key twice


def make_train_recipes() -> list[str]:
    """The recipe files `make train` runs (without INIT), in order."""
    makefile = (REPO / "Makefile").read_text()
    target = makefile.split("\ntrain:", 1)[1].split("\nelse", 1)[0]
    return re.findall(r"^\tfer-train --config (\S+)$", target, flags=re.MULTILINE)


def test_the_shipped_model_lists_the_recipes_make_train_replays_as_they_are(capsys: pytest.CaptureFixture) -> None:
    shipped = load_model()
    recipes = chain_recipes(shipped.meta)
    assert len(recipes) == len(shipped.meta["provenance"]) and None not in recipes
    assert [recipe["path"] for recipe in recipes] == make_train_recipes()
    for recipe in recipes:
        assert read_recipe(str(REPO / recipe["path"]), option_types()).sha256 == recipe["sha256"], recipe["path"]
    assert provenance_main([shipped.path, "--recipes"]) == 0
    assert capsys.readouterr().out.split() == make_train_recipes()


def test_each_recipe_sets_what_its_recorded_command_set() -> None:
    """The shipped chain's commands as recorded against their recipes: every option a command gave (paths
    and threads aside: the recipes chain runs/ folders where the commands once named the shipped file) has
    the recipe's value, and the recipe's first stage stops where the recorded run was stopped by hand."""
    shipped = load_model()
    for record, recipe in zip(shipped.meta["provenance"], chain_recipes(shipped.meta)):
        recorded = parse_args(record.get("argv") or shlex.split(record["command"])[1:])
        replayed = parse_args(["--config", str(REPO / recipe["path"])])
        assert recorded.resume == replayed.resume
        for name in recorded.given - {"data", "out", "init", "threads"}:
            assert getattr(replayed.config, name) == getattr(recorded.config, name), (recipe["path"], name)
    # The last stage's recipe is the shipped model's whole recorded configuration (settings added since
    # take their defaults, which is what that run did).
    last = asdict(parse_args(["--config", str(REPO / chain_recipes(shipped.meta)[-1]["path"])]).config)
    stored = {name: value for name, value in shipped.meta["training_config"].items()
              if name not in ("data", "out", "init", "threads")}
    assert {name: last[name] for name in stored} == stored
