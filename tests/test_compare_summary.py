"""Tests for the numbers and files of `python -m mimetic_jax.compare`.

The table logic (`summary`, `report`) is checked on synthetic
`metrics.jsonl` records against hand-computed values; `workdirs` on run
folders written here; `options` on flag text and on overrides parsed by
absl, with no trainer started. tests/test_compare_runner.py runs whole
comparisons.
"""

import json
import math
import pathlib

from absl import flags
from ml_collections import config_flags
import pytest

from mimetic_jax.compare import options, report, summary, workdirs
from mimetic_jax.errors import UserError
from mimetic_jax.metric_logging import format_duration

INITS = ("default", "mimetic", "trunc_normal")


def _evals(values, key="eval_accuracy", steps=(3, 6, 9, 12), steps_per_epoch=6):
  """Eval records at `steps` (with train records between, as on disk)."""
  records = []
  for step, value in zip(steps, values):
    records.append({"step": step - 1, "train_loss": 1.0})
    records.append(
      {
        "step": step,
        "epoch": step / steps_per_epoch,
        key: value,
        "eval_loss": 1.0,
      }
    )
  return records


def _run(
  init,
  seed,
  values,
  *,
  metric=summary.ACCURACY,
  total_steps=12,
  finished=True,
  **kwargs,
):
  records = _evals(values, metric.key, **kwargs)
  return {
    "init": init,
    "seed": seed,
    "summary": summary.summarize_run(
      records, metric, total_steps=total_steps, finished=finished
    ),
  }


def _cells(markdown: str, first: str) -> list[str]:
  """The cells of the table row whose first cell is `first`."""
  for line in markdown.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("|") and cells[0] == first:
      return cells
  raise AssertionError(f"No row {first!r} in:\n{markdown}")


# ------------------------------------------------------ pure functions ---


def test_eval_curve_keeps_eval_records_sorted_and_the_later_duplicate():
  records = [
    {"step": 6, "epoch": 1.0, "eval_accuracy": 0.5},
    {"step": 2, "train_loss": 1.0},
    {"step": 3, "epoch": 0.5, "eval_accuracy": 0.25},
    {"epoch": 0.7, "eval_accuracy": 0.9},  # No step: ignored.
    {"step": 6, "epoch": 1.0, "eval_accuracy": 0.75},  # Resumed run.
  ]
  assert summary.eval_curve(records, "eval_accuracy") == [
    {"step": 3, "epoch": 0.5, "value": 0.25},
    {"step": 6, "epoch": 1.0, "value": 0.75},
  ]
  assert summary.eval_curve(records, "eval_bits_per_byte") == []
  curve = summary.eval_curve([{"step": 4, "eval_accuracy": 1}], "eval_accuracy")
  assert math.isnan(curve[0]["epoch"])


def test_summarize_run_finished():
  run = summary.summarize_run(
    _evals([0.4, 0.7, 0.6, 0.65]),
    summary.ACCURACY,
    total_steps=12,
    finished=True,
  )
  assert run == {
    "final": 0.65,
    "best": 0.7,
    "best_step": 6,
    "step": 12,
    "epoch": 2.0,
    "num_evals": 4,
    "total_steps": 12,
    "finished": True,
    "at": {0.25: 0.4, 0.5: 0.7, 0.75: 0.6, 1.0: 0.65},
    "at_step": {0.25: 3, 0.5: 6, 0.75: 9, 1.0: 12},
  }


def test_summarize_run_lower_is_better_for_bits_per_byte():
  records = _evals([3.0, 2.0, 2.5, 2.25], key="eval_bits_per_byte")
  run = summary.summarize_run(
    records, summary.BITS_PER_BYTE, total_steps=12, finished=True
  )
  assert (run["final"], run["best"], run["best_step"]) == (2.25, 2.0, 6)
  # The same records judged as accuracy: higher wins.
  records = _evals([3.0, 2.0, 2.5, 2.25])
  run = summary.summarize_run(
    records, summary.ACCURACY, total_steps=12, finished=True
  )
  assert (run["best"], run["best_step"]) == (3.0, 3)


def test_summarize_run_unfinished_leaves_unreached_fractions_empty():
  run = summary.summarize_run(
    _evals([0.4, 0.7]), summary.ACCURACY, total_steps=12, finished=False
  )
  assert run["final"] == 0.7 and run["step"] == 6
  assert run["at"] == {0.25: 0.4, 0.5: 0.7, 0.75: None, 1.0: None}
  assert run["at_step"] == {0.25: 3, 0.5: 6, 0.75: None, 1.0: None}
  empty = summary.summarize_run(
    [], summary.ACCURACY, total_steps=None, finished=False, fractions=(1.0,)
  )
  assert empty["final"] is None and empty["best"] is None
  assert empty["num_evals"] == 0 and empty["at"] == {1.0: None}


def test_value_at_fraction_nearest_record_ties_to_the_earlier():
  curve = summary.eval_curve(_evals([0.1, 0.2, 0.3, 0.4]), "eval_accuracy")
  at = lambda f, finished=True: summary.value_at_fraction(
    curve, 12, f, finished=finished
  )
  assert at(0.25) == (0.1, 3)
  assert at(0.4) == (0.2, 6)  # Target 4.8: step 6 is 1.2 away, step 3 1.8.
  assert at(0.375) == (0.1, 3)  # Target 4.5: a tie.
  assert at(0.01) == (0.1, 3)
  assert at(1.0, finished=False) == (0.4, 12)
  assert summary.value_at_fraction(curve[:2], 12, 0.75, finished=False) == (
    None,
    None,
  )
  assert summary.value_at_fraction(curve[:2], 12, 0.75, finished=True) == (
    0.2,
    6,
  )
  assert summary.value_at_fraction([], 12, 0.5, finished=True) == (None, None)
  assert summary.value_at_fraction(curve, None, 0.5, finished=True) == (
    None,
    None,
  )


def test_budget_steps():
  curve = summary.eval_curve(_evals([0.1]), "eval_accuracy")  # Epoch 0.5.
  # What the trainer records at the start of a run wins (the last record,
  # for a resumed run).
  recorded = [
    {
      "step": 0,
      "compile_seconds": 1.0,
      "total_steps": 10.0,
      "steps_per_epoch": 5.0,
    },
    {
      "step": 4,
      "compile_seconds": 1.0,
      "total_steps": 12.0,
      "steps_per_epoch": 6.0,
    },
  ]
  assert summary.budget_steps({"total_steps": 16}, curve, 16, recorded) == 12
  assert summary.budget_steps({}, [], None, recorded[:1]) == 10
  # Workdirs from before that record: the finished run's last step, ...
  assert summary.budget_steps({"total_steps": 12}, curve, 16) == 16
  assert (
    summary.budget_steps(
      {"total_steps": 12}, curve, 16, [{"step": 0, "compile_seconds": 1.0}]
    )
    == 16
  )
  # ... else the config's total_steps, ...
  assert summary.budget_steps({"total_steps": 12}, curve) == 12
  # ... else epochs x 6 steps per epoch, rounded up as the trainer does.
  assert (
    summary.budget_steps({"total_steps": 0, "num_epochs": 2.5}, curve) == 15
  )
  assert (
    summary.budget_steps({"total_steps": 0, "num_epochs": 2.1}, curve) == 13
  )
  assert summary.budget_steps({"total_steps": 0, "num_epochs": 2.0}, []) is None


def test_mean_std():
  assert summary.mean_std([1.0, 2.0, 3.0, None]) == (2.0, 1.0, 3)
  assert summary.mean_std([5]) == (5.0, None, 1)
  assert summary.mean_std([None]) == (None, None, 0)
  assert summary.mean_std([]) == (None, None, 0)
  mean, std, n = summary.mean_std([0.5, 0.7])
  assert (mean, n) == (pytest.approx(0.6), 2)
  assert std == pytest.approx(math.sqrt(0.02))  # Sample std: n - 1.


def test_summarize_inits_groups_by_init_in_order_of_appearance():
  runs = [
    _run("mimetic", 0, [0.8]),
    _run("default", 0, [0.5]),
    _run("mimetic", 1, [0.9], finished=False),
    _run("default", 1, [0.7]),
  ]
  result = summary.summarize_inits(runs, fractions=(0.5,))
  assert list(result) == ["mimetic", "default"]
  assert result["mimetic"]["seeds"] == [0, 1]
  assert result["mimetic"]["finished"] == 1
  assert result["default"]["finished"] == 2
  mean, std, n = result["default"]["final"]
  assert (mean, std, n) == (pytest.approx(0.6), pytest.approx(0.1414213), 2)
  assert result["default"]["at"][0.5][0] == pytest.approx(0.6)
  # Each run has one eval, at step 3; the unfinished one has not reached
  # 50 % of the 12 steps, the finished ones count their nearest eval.
  assert result["mimetic"]["at"][0.5] == (0.8, None, 1)


def test_render_markdown_tables():
  runs = [
    _run("default", 0, [0.4, 0.5, 0.6, 0.5]),
    _run("default", 1, [0.5, 0.6, 0.7, 0.7]),
    _run("mimetic", 0, [0.6, 0.7, 0.8, 0.8]),
    _run("mimetic", 1, [0.7, 0.8, 0.9, 0.9]),
  ]
  runs[0]["wall_seconds"] = 65
  runs[1]["wall_seconds"] = 3725
  runs[3]["status"] = "failed (exit 1)"
  text = report.render_markdown(
    title="default vs mimetic on configs/cifar10.py:smoke",
    metric=summary.ACCURACY,
    runs=runs,
    command="python -m x --a",
    report_command="python -m x --report_only",
    total_steps=12,
    notes=["A note."],
  )
  assert text.startswith(
    "# Comparison: default vs mimetic on configs/cifar10.py:smoke\n"
  )
  assert "Produced by:\n\n```\npython -m x --a\n```" in text
  assert "Report rebuilt by:\n\n```\npython -m x --report_only\n```" in text
  assert "**eval accuracy (%)**, higher is better" in text
  assert "(12 steps)" in text and "\nA note.\n" in text
  assert _cells(text, "init") == [
    "init",
    "seeds",
    "final",
    "best",
    "at 25 % (step 3)",
    "at 50 % (step 6)",
    "at 75 % (step 9)",
    "at 100 % (step 12)",
    "final − default",
  ]
  assert _cells(text, "default") == [
    "default",
    "0,1",
    "60.00 ± 14.14",
    "65.00 ± 7.07",
    "45.00 ± 7.07",
    "55.00 ± 7.07",
    "65.00 ± 7.07",
    "60.00 ± 14.14",
    "—",
  ]
  assert _cells(text, "mimetic") == [
    "mimetic",
    "0,1",
    "85.00 ± 7.07",
    "85.00 ± 7.07",
    "65.00 ± 7.07",
    "75.00 ± 7.07",
    "85.00 ± 7.07",
    "85.00 ± 7.07",
    "+25.00",
  ]
  assert _cells(text, "run") == [
    "run",
    "init",
    "seed",
    "final",
    "best (step)",
    "steps",
    "epochs",
    "wall time",
    "status",
  ]
  assert _cells(text, "default_seed0") == [
    "default_seed0",
    "default",
    "0",
    "50.00",
    "60.00 (9)",
    "12 / 12",
    "2.00",
    "1m05s",
    "finished",
  ]
  assert _cells(text, "default_seed1")[7] == "1h02m"
  assert format_duration(59.6) == "1m00s"  # Rounded, as before the split.
  assert _cells(text, "mimetic_seed0")[7] == "—"
  assert _cells(text, "mimetic_seed1")[8] == "failed (exit 1)"
  assert text.endswith("![eval accuracy (%) against epoch](accuracy.png)\n")
  # Without a separate report command, no "rebuilt" section.
  plain = report.render_markdown(
    title="t",
    metric=summary.ACCURACY,
    runs=runs,
    command="c",
    report_command="c",
  )
  assert "Report rebuilt by" not in plain and "Produced by" in plain


def test_render_markdown_unfinished_and_single_seed():
  runs = [
    _run("default", 0, [0.4, 0.5, 0.6, 0.5]),
    _run("mimetic", 0, [0.6, 0.8, 0.8, 0.9]),
    _run("mimetic", 1, [0.7, 0.8], finished=False),
  ]
  text = report.render_markdown(
    title="t", metric=summary.ACCURACY, runs=runs, total_steps=12
  )
  assert _cells(text, "default")[1:4] == ["0", "50.00 (n=1)", "60.00 (n=1)"]
  assert _cells(text, "mimetic") == [
    "mimetic",
    "0,1 (1 finished)",
    "85.00 ± 7.07",
    "85.00 ± 7.07",
    "65.00 ± 7.07",
    "80.00 ± 0.00",
    "80.00 (n=1)",
    "90.00 (n=1)",
    "+35.00",
  ]
  assert _cells(text, "mimetic_seed1")[3:] == [
    "80.00",
    "80.00 (6)",
    "6 / 12",
    "1.00",
    "—",
    "incomplete",
  ]


def test_render_markdown_headers_give_the_step_actually_used():
  """Sparse or uneven evals: the header says which record a column holds."""
  runs = [
    _run("default", 0, [0.5, 0.6, 0.7, 0.8]),
    _run("mimetic", 0, [0.5, 0.6, 0.7], steps=(4, 8, 12)),
  ]
  text = report.render_markdown(
    title="t", metric=summary.ACCURACY, runs=runs, total_steps=12
  )
  # Default evals at 3, 6, 9, 12; mimetic at 4, 8, 12 (for 50 %, i.e. step
  # 6, steps 4 and 8 tie, so the earlier).
  assert _cells(text, "init")[4:8] == [
    "at 25 % (steps 3–4)",
    "at 50 % (steps 4–6)",
    "at 75 % (steps 8–9)",
    "at 100 % (step 12)",
  ]
  only_final = [
    _run("default", 0, [2.0], metric=summary.BITS_PER_BYTE, steps=(12,))
  ]
  text = report.render_markdown(
    title="t", metric=summary.BITS_PER_BYTE, runs=only_final, total_steps=12
  )
  assert _cells(text, "init")[4] == "at 25 % (step 12)"


def test_render_markdown_bits_per_byte():
  runs = [
    _run("default", 0, [3.0, 2.0, 2.5, 2.25], metric=summary.BITS_PER_BYTE),
    _run("mimetic", 0, [2.5, 2.0, 1.75, 2.0], metric=summary.BITS_PER_BYTE),
  ]
  text = report.render_markdown(
    title="t", metric=summary.BITS_PER_BYTE, runs=runs
  )
  assert "**eval bits per byte**, lower is better" in text
  assert _cells(text, "default")[2:4] == ["2.2500 (n=1)", "2.0000 (n=1)"]
  assert _cells(text, "mimetic")[-1] == "-0.2500"  # Negative: mimetic wins.
  assert _cells(text, "mimetic_seed0")[4] == "1.7500 (9)"
  assert text.endswith(
    "![eval bits per byte against epoch](bits_per_byte.png)\n"
  )


def test_metric_for_task():
  assert summary.metric_for_task("image") is summary.ACCURACY
  assert summary.metric_for_task("lm") is summary.BITS_PER_BYTE
  assert summary.ACCURACY.plot_file == "accuracy.png"
  assert summary.BITS_PER_BYTE.plot_file == "bits_per_byte.png"
  assert summary.BITS_PER_BYTE.better(1.0, 2.0)
  assert summary.ACCURACY.better(2.0, 1.0)
  assert summary.ACCURACY.format(0.1234) == "12.34"
  assert summary.BITS_PER_BYTE.format(1.23456) == "1.2346"
  assert summary.ACCURACY.format(math.nan) == "—"
  with pytest.raises(UserError, match="Unknown task 'video'"):
    summary.metric_for_task("video")


def test_parse_seeds():
  assert options.parse_seeds("0, 1,2") == [0, 1, 2]
  assert options.parse_seeds("-1") == [-1]
  for text, message in (
    ("", "--seeds is empty"),
    (" ", "--seeds is empty"),
    ("0,a", "'a' is not an integer"),
    ("0,,1", "'' is not an integer"),
    ("1,2,1", "repeats a seed"),
  ):
    with pytest.raises(UserError, match=message):
      options.parse_seeds(text)


def test_parse_inits():
  assert options.parse_inits("default, mimetic", INITS) == [
    "default",
    "mimetic",
  ]
  for text, message in (
    ("", "--inits is empty"),
    (",", "--inits is empty"),
    ("default,xavier", r"unknown init\(s\) \['xavier'\]"),
    ("mimetic,mimetic", "repeats an init"),
  ):
    with pytest.raises(UserError, match=message):
      options.parse_inits(text, INITS)


def test_parse_fractions():
  assert options.parse_fractions("0.5,0.25,1,0.5") == [0.25, 0.5, 1.0]
  for text in ("", "0", "0.5,1.5", "half"):
    with pytest.raises(UserError, match="in \\(0, 1\\]"):
      options.parse_fractions(text)


def test_config_differences():
  recorded = {
    "init": "mimetic",
    "seed": 0,
    "learning_rate": 1e-3,
    "model": {"width": 32, "depth": 2},
    "mimetic": {"qk": [0.7, 0.7]},
    "initial": 1,
  }
  wanted = {
    "init": "default",
    "seed": 1,
    "learning_rate": 3e-3,
    "model": {"width": 32},
    "mimetic": {"qk": None},
    "extra": 1,
    "initial": 2,
  }
  assert workdirs.config_differences(recorded, wanted) == [
    ("extra", "<absent>", 1),
    ("initial", 1, 2),
    ("learning_rate", 1e-3, 3e-3),
    ("mimetic.qk", [0.7, 0.7], None),
    ("model.depth", 2, "<absent>"),
  ]
  # Ignoring a group ignores its sub-keys, not keys that merely start alike.
  assert [
    d[0]
    for d in workdirs.config_differences(
      recorded, wanted, ignore=("model", "init", "seed")
    )
  ] == ["extra", "initial", "learning_rate", "mimetic.qk"]
  assert workdirs.config_differences(recorded, recorded) == []


def _parse_config_flag(*args: str) -> flags.FlagValues:
  """A `--config` flag (and `--seeds`) parsed from `args` as absl does."""
  argv = ["compare", "--config", "configs/cifar10.py:smoke", *args]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file(
    "config", None, "", flag_values=values, lock_config=True, sys_argv=argv
  )
  flags.DEFINE_string("seeds", "0", "", flag_values=values)
  assert values(argv) == ["compare"]
  return values


def test_override_args_pass_every_override_on():
  parsed = _parse_config_flag(
    "--config.total_steps",
    "12",
    "--config.learning_rate=1e-3",
    "--noconfig.augment.flip",
    "--config.model.gelu_approximate",
    "--seeds=0",
    "--config.dataset.path=a b,c",
    "--config.mimetic.qk=None",
    "--config.mimetic.vo",
    "(0.5, -0.5)",
    "-config.batch_size",
    "8",
    "--config.total_steps=14",
  )
  args = options.override_args(parsed)
  assert args == [
    "--config.total_steps=14",
    "--config.learning_rate=0.001",
    "--noconfig.augment.flip",
    "--config.model.gelu_approximate",
    "--config.dataset.path=a b,c",
    "--config.mimetic.qk=(None,)",
    "--config.mimetic.vo=(0.5, -0.5)",
    "--config.batch_size=8",
  ]
  # A trainer given them parses the same overrides into the same config.
  again = _parse_config_flag(*args)
  assert config_flags.get_override_values(
    again["config"]
  ) == config_flags.get_override_values(parsed["config"])
  assert again.config.to_dict() == parsed.config.to_dict()
  assert options.override_args(_parse_config_flag()) == []


# ------------------------------------------- workdirs, without training ---


def _write_run(
  workdir: pathlib.Path,
  init: str,
  seed: int,
  values,
  *,
  task="image",
  key="eval_accuracy",
  finished=True,
  start_record=None,
  **config,
):
  """A run folder as the trainer leaves it; `start_record` is written first
  into metrics.jsonl (the trainer's record of its step budget)."""
  run_dir = workdir / workdirs.run_name(init, seed)
  run_dir.mkdir(parents=True)
  config = {
    "task": task,
    "init": init,
    "seed": seed,
    "total_steps": 12,
    "learning_rate": 1e-3,
    **config,
  }
  (run_dir / "config.json").write_text(json.dumps(config))
  records = ([start_record] if start_record else []) + _evals(values, key)
  (run_dir / "metrics.jsonl").write_text(
    "".join(json.dumps(r) + "\n" for r in records)
  )
  if finished:
    (run_dir / "final_metrics.json").write_text(
      json.dumps({"step": records[-1]["step"], key: values[-1]})
    )
  return run_dir


def test_read_jsonl_skips_a_torn_last_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1}\n\n{"step": 2, "eval_acc')
  assert workdirs.read_jsonl(path) == [{"step": 1}]
  assert workdirs.read_jsonl(tmp_path / "absent.jsonl") == []


def test_find_run_dirs_and_check_consistent(tmp_path):
  _write_run(tmp_path, "mimetic", 1, [0.5])
  _write_run(tmp_path, "default", 0, [0.5])
  (tmp_path / "notes").mkdir()
  (tmp_path / "default_seed2").mkdir()  # Never started: no config.json.
  runs = workdirs.find_run_dirs(tmp_path)
  assert [(r.init, r.seed) for r in runs] == [("default", 0), ("mimetic", 1)]
  assert runs[0].final == {"step": 3, "eval_accuracy": 0.5}
  assert workdirs.find_run_dirs(tmp_path / "absent") == []

  wanted = {
    "task": "image",
    "init": "mimetic",
    "seed": 0,
    "total_steps": 12,
    "learning_rate": 1e-3,
  }
  workdirs.check_consistent(runs, wanted, tmp_path)  # init, seed may differ.
  workdirs.check_consistent(runs, None, tmp_path)
  with pytest.raises(UserError) as error:
    workdirs.check_consistent(runs, dict(wanted, learning_rate=3e-3), tmp_path)
  message = str(error.value)
  assert (
    "default_seed0 was made with a different config than this command"
  ) in message
  assert "learning_rate: 0.001 (default_seed0) vs 0.003 (wanted)" in message
  assert "Use a new --workdir" in message

  _write_run(tmp_path, "trunc_normal", 0, [0.5], learning_rate=3e-3)
  with pytest.raises(
    UserError,
    match=r"0\.003 \(trunc_normal_seed0\) vs "
    r"0\.001 \(default_seed0\)",
  ):
    workdirs.check_consistent(workdirs.find_run_dirs(tmp_path), None, tmp_path)


def test_check_consistent_refuses_a_misnamed_run(tmp_path):
  run_dir = _write_run(tmp_path, "default", 0, [0.5])
  run_dir.rename(tmp_path / "mimetic_seed0")
  with pytest.raises(
    UserError,
    match="trained with init='default', seed=0, which its name does not say",
  ):
    workdirs.check_consistent(workdirs.find_run_dirs(tmp_path), None, tmp_path)


def test_write_report_for_language_models(tmp_path):
  for seed, values in ((0, [3.0, 2.5]), (1, [3.2, 2.7])):
    _write_run(
      tmp_path, "default", seed, values, task="lm", key="eval_bits_per_byte"
    )
  _write_run(
    tmp_path,
    "mimetic",
    0,
    [2.9, 2.4],
    task="lm",
    key="eval_bits_per_byte",
    finished=False,
  )
  runs = workdirs.find_run_dirs(tmp_path)
  results, plot = report.write_report(
    tmp_path,
    runs,
    title="t",
    fractions=(0.5, 1.0),
    command="c",
    report_command=None,
  )
  assert plot == tmp_path / "bits_per_byte.png"
  assert plot.read_bytes().startswith(b"\x89PNG")
  assert not (tmp_path / "accuracy.png").exists()
  text = results.read_text()
  assert "lower is better" in text
  assert "Some runs are not finished" in text
  # Finished default runs end at step 6 (their last eval); the budget of
  # the unfinished mimetic run is its config's 12 steps.
  assert _cells(text, "default")[2] == "2.6000 ± 0.1414"
  assert _cells(text, "mimetic_seed0")[5:] == [
    "6 / 12",
    "1.00",
    "—",
    "incomplete",
  ]


def test_write_report_without_started_runs(tmp_path):
  assert (
    report.write_report(
      tmp_path,
      [],
      title="t",
      fractions=(1.0,),
      command=None,
      report_command=None,
    )
    is None
  )
  assert not list(tmp_path.iterdir())


def test_write_report_takes_the_budget_the_trainer_recorded(tmp_path):
  # Unfinished runs of a num_epochs config: without the trainer's record,
  # the budget would be derived as 3 epochs x 6 steps = 18; the record wins.
  for seed in (0, 1):
    _write_run(
      tmp_path,
      "default",
      seed,
      [0.5, 0.6],
      finished=False,
      total_steps=0,
      num_epochs=3,
      start_record={
        "step": 0,
        "compile_seconds": 1.0,
        "total_steps": 24.0,
        "steps_per_epoch": 6.0,
      },
    )
  results, _ = report.write_report(
    tmp_path,
    workdirs.find_run_dirs(tmp_path),
    title="t",
    fractions=(0.25, 1.0),
    command="c",
    report_command=None,
  )
  text = results.read_text()
  assert "(24 steps)" in text
  assert _cells(text, "default_seed0")[5] == "6 / 24"
  assert _cells(text, "init")[4:6] == ["at 25 % (step 6)", "at 100 %"]
