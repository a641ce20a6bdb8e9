"""What a comparison keeps on disk, and the check that it is one comparison.

`DIR/<init>_seed<seed>/` is one run's trainer workdir (`config.json`,
`metrics.jsonl`, `final_metrics.json` once finished, plus the runner's
`compare_wall_time.json`); `DIR/compare_command.json` records the command.
The runs in one `DIR` must share every config key but `init` and `seed`.
"""

from collections.abc import Mapping, Sequence
import dataclasses
import json
import os
import pathlib
import re
from typing import Any

from flax import traverse_util

from mimetic_jax.errors import UserError

RUN_DIR_PATTERN = re.compile(r"^(?P<init>[A-Za-z0-9_]+)_seed(?P<seed>-?\d+)$")
# Keys that differ between the runs of one comparison by design.
PER_RUN_KEYS = ("init", "seed")
WALL_TIME_FILE = "compare_wall_time.json"
COMMAND_FILE = "compare_command.json"


def run_name(init: str, seed: int) -> str:
  """The folder name of a run: 'mimetic_seed0'."""
  return f"{init}_seed{seed}"


def read_jsonl(path: os.PathLike[str] | str) -> list[dict[str, Any]]:
  """Records of a `metrics.jsonl`; [] if absent. A torn last line (from a
  killed run) is skipped."""
  records = []
  try:
    with open(path, encoding="utf-8") as f:
      for line in f:
        line = line.strip()
        if not line:
          continue
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError:
          continue
  except FileNotFoundError:
    pass
  return records


def read_json(path: os.PathLike[str] | str) -> Any:
  """The JSON value in `path`, or None if there is no such file."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    return None


def add_wall_time(run_dir: pathlib.Path, seconds: float) -> None:
  """Adds one attempt of `seconds` to `run_dir/compare_wall_time.json`."""
  path = run_dir / WALL_TIME_FILE
  previous = read_json(path) or {}
  data = {
    "wall_seconds": previous.get("wall_seconds", 0.0) + seconds,
    "attempts": previous.get("attempts", 0) + 1,
  }
  path.write_text(json.dumps(data, indent=2), encoding="utf-8")


@dataclasses.dataclass
class RunDir:
  """What is on disk for one run."""

  path: pathlib.Path
  init: str
  seed: int
  config: dict[str, Any] | None  # config.json, None if never started.
  final: dict[str, Any] | None  # final_metrics.json, None if unfinished.
  wall_seconds: float | None  # Summed over attempts; None if never run.

  @property
  def name(self) -> str:
    return run_name(self.init, self.seed)

  def records(self) -> list[dict[str, Any]]:
    return read_jsonl(self.path / "metrics.jsonl")


def load_run_dir(path: pathlib.Path, init: str, seed: int) -> RunDir:
  """Reads one run's folder (which need not exist yet)."""
  wall = read_json(path / WALL_TIME_FILE)
  return RunDir(
    path=path,
    init=init,
    seed=seed,
    config=read_json(path / "config.json"),
    final=read_json(path / "final_metrics.json"),
    wall_seconds=wall.get("wall_seconds") if wall else None,
  )


def find_run_dirs(workdir: pathlib.Path) -> list[RunDir]:
  """Every `<init>_seed<seed>` folder with a `config.json` in `workdir`,
  sorted by name."""
  runs = []
  if workdir.is_dir():
    for child in sorted(workdir.iterdir()):
      match = RUN_DIR_PATTERN.match(child.name)
      if match and child.is_dir() and (child / "config.json").exists():
        runs.append(load_run_dir(child, match["init"], int(match["seed"])))
  return runs


def config_differences(
  recorded: Mapping[str, Any],
  wanted: Mapping[str, Any],
  ignore: Sequence[str] = PER_RUN_KEYS,
) -> list[tuple[str, Any, Any]]:
  """(key, recorded value, wanted value) for every key that differs.

  Both are config dicts as `config.json` holds them; keys are dotted paths
  ('model.width'), sorted; missing keys show as '<absent>'. Keys in
  `ignore` (and their sub-keys) are skipped.
  """
  a = traverse_util.flatten_dict(dict(recorded), sep=".")
  b = traverse_util.flatten_dict(dict(wanted), sep=".")
  skip = lambda k: any(k == i or k.startswith(i + ".") for i in ignore)
  return [
    (k, a.get(k, "<absent>"), b.get(k, "<absent>"))
    for k in sorted(set(a) | set(b))
    if not skip(k) and a.get(k, "<absent>") != b.get(k, "<absent>")
  ]


def format_differences(
  diffs: Sequence[tuple[str, Any, Any]], names: tuple[str, str]
) -> str:
  """One indented line per difference: 'key: a (names[0]) vs b (names[1])'."""
  return "\n".join(
    f"  {key}: {a!r} ({names[0]}) vs {b!r} ({names[1]})" for key, a, b in diffs
  )


def check_consistent(
  runs: Sequence[RunDir],
  wanted: Mapping[str, Any] | None,
  workdir: pathlib.Path,
) -> None:
  """Refuses a `workdir` whose runs differ from `wanted` (or each other).

  Raises:
    UserError: naming the run, the keys that differ and the fix.
  """
  started = [r for r in runs if r.config is not None]
  for run in started:
    recorded = {k: run.config.get(k) for k in PER_RUN_KEYS}
    if recorded != {"init": run.init, "seed": run.seed}:
      raise UserError(
        f"{run.path} was trained with init={recorded['init']!r}, "
        f"seed={recorded['seed']!r}, which its name does not say. Move it "
        f"out of {workdir}, or use a new --workdir."
      )
  if wanted is not None:
    reference, reference_name, label = wanted, "this command", "wanted"
  elif started:
    reference, reference_name = started[0].config, str(started[0].path)
    label = started[0].path.name
  for run in started:
    diffs = config_differences(run.config, reference)
    if diffs:
      raise UserError(
        f"{run.path} was made with a different config than "
        f"{reference_name}:\n"
        + format_differences(diffs, (run.path.name, label))
        + f"\nThe runs in one comparison must share every setting but init "
        f"and seed. Use a new --workdir for these settings (or rerun with "
        f"the settings {run.path.name} was made with, or delete "
        f"{run.path} to retrain it)."
      )
