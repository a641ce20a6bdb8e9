"""Tests for mimetic_jax.compare: the (init, seed) comparison runner.

The table logic is checked on synthetic `metrics.jsonl` records against
hand-computed values. End to end, one comparison (2 inits x 2 seeds on a tiny
generated image folder, one CPU device per trainer) is taken through its
whole life once per module: interrupted with SIGTERM, resumed, rerun,
rerun with a different config, and its report rebuilt; the tests then read
what each stage printed and left on disk. A two-run comparison on the real
Tiny Shakespeare text checks the language-model path (bits per byte).
"""

import json
import math
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import types

import pytest

from mimetic_jax import compare

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
INITS = ("default", "mimetic", "trunc_normal")
RUNS = ("default_seed0", "default_seed1", "mimetic_seed0", "mimetic_seed1")
# One CPU device per trainer. 96 training images in batches of 16: 6 steps
# per epoch, evals at steps 3, 6, 9 and 12 (exactly 25/50/75/100 % of the
# budget), checkpoints at 4, 8 and 12.
ENV = dict(os.environ, JAX_PLATFORMS="cpu",
           XLA_FLAGS="--xla_force_host_platform_device_count=1")
TINY_OVERRIDES = (
    "--config.dataset.image_size=16", "--config.model.patch_size=4",
    "--config.batch_size=16", "--config.eval_batch_size=24",
    "--config.total_steps=12", "--config.log_every_steps=1",
    "--config.checkpoint_every_steps=4", "--config.eval_every_epochs=0.5",
    "--config.dataset.max_train_examples=0",
    "--config.dataset.max_eval_examples=0", "--config.learning_rate=1e-3")


def _evals(values, key="eval_accuracy", steps=(3, 6, 9, 12),
           steps_per_epoch=6):
  """Eval records at `steps` (with train records between, as on disk)."""
  records = []
  for step, value in zip(steps, values):
    records.append({"step": step - 1, "train_loss": 1.0})
    records.append({"step": step, "epoch": step / steps_per_epoch,
                    key: value, "eval_loss": 1.0})
  return records


def _run(init, seed, values, *, metric=compare.ACCURACY, total_steps=12,
         finished=True, **kwargs):
  records = _evals(values, metric.key, **kwargs)
  return {"init": init, "seed": seed,
          "summary": compare.summarize_run(records, metric,
                                           total_steps=total_steps,
                                           finished=finished)}


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
  assert compare.eval_curve(records, "eval_accuracy") == [
      {"step": 3, "epoch": 0.5, "value": 0.25},
      {"step": 6, "epoch": 1.0, "value": 0.75}]
  assert compare.eval_curve(records, "eval_bits_per_byte") == []
  curve = compare.eval_curve([{"step": 4, "eval_accuracy": 1}],
                             "eval_accuracy")
  assert math.isnan(curve[0]["epoch"])


def test_summarize_run_finished():
  summary = compare.summarize_run(_evals([0.4, 0.7, 0.6, 0.65]),
                                  compare.ACCURACY, total_steps=12,
                                  finished=True)
  assert summary == {
      "final": 0.65, "best": 0.7, "best_step": 6, "step": 12, "epoch": 2.0,
      "num_evals": 4, "total_steps": 12, "finished": True,
      "at": {0.25: 0.4, 0.5: 0.7, 0.75: 0.6, 1.0: 0.65},
      "at_step": {0.25: 3, 0.5: 6, 0.75: 9, 1.0: 12}}


def test_summarize_run_lower_is_better_for_bits_per_byte():
  records = _evals([3.0, 2.0, 2.5, 2.25], key="eval_bits_per_byte")
  summary = compare.summarize_run(records, compare.BITS_PER_BYTE,
                                  total_steps=12, finished=True)
  assert (summary["final"], summary["best"], summary["best_step"]) == (
      2.25, 2.0, 6)
  # The same records judged as accuracy: higher wins.
  records = _evals([3.0, 2.0, 2.5, 2.25])
  summary = compare.summarize_run(records, compare.ACCURACY, total_steps=12,
                                  finished=True)
  assert (summary["best"], summary["best_step"]) == (3.0, 3)


def test_summarize_run_unfinished_leaves_unreached_fractions_empty():
  summary = compare.summarize_run(_evals([0.4, 0.7]), compare.ACCURACY,
                                  total_steps=12, finished=False)
  assert summary["final"] == 0.7 and summary["step"] == 6
  assert summary["at"] == {0.25: 0.4, 0.5: 0.7, 0.75: None, 1.0: None}
  assert summary["at_step"] == {0.25: 3, 0.5: 6, 0.75: None, 1.0: None}
  empty = compare.summarize_run([], compare.ACCURACY, total_steps=None,
                                finished=False, fractions=(1.0,))
  assert empty["final"] is None and empty["best"] is None
  assert empty["num_evals"] == 0 and empty["at"] == {1.0: None}


def test_value_at_fraction_nearest_record_ties_to_the_earlier():
  curve = compare.eval_curve(_evals([0.1, 0.2, 0.3, 0.4]), "eval_accuracy")
  at = lambda f, finished=True: compare.value_at_fraction(
      curve, 12, f, finished=finished)
  assert at(0.25) == (0.1, 3)
  assert at(0.4) == (0.2, 6)  # Target 4.8: step 6 is 1.2 away, step 3 1.8.
  assert at(0.375) == (0.1, 3)  # Target 4.5: a tie.
  assert at(0.01) == (0.1, 3)
  assert at(1.0, finished=False) == (0.4, 12)
  assert compare.value_at_fraction(curve[:2], 12, 0.75,
                                   finished=False) == (None, None)
  assert compare.value_at_fraction(curve[:2], 12, 0.75,
                                   finished=True) == (0.2, 6)
  assert compare.value_at_fraction([], 12, 0.5, finished=True) == (None,
                                                                     None)
  assert compare.value_at_fraction(curve, None, 0.5,
                                   finished=True) == (None, None)


def test_budget_steps():
  curve = compare.eval_curve(_evals([0.1]), "eval_accuracy")  # Epoch 0.5.
  assert compare.budget_steps({"total_steps": 12}, curve, 16) == 16
  assert compare.budget_steps({"total_steps": 12}, curve) == 12
  # 6 steps per epoch, rounded up as the trainer does.
  assert compare.budget_steps({"total_steps": 0, "num_epochs": 2.5},
                              curve) == 15
  assert compare.budget_steps({"total_steps": 0, "num_epochs": 2.1},
                              curve) == 13
  assert compare.budget_steps({"total_steps": 0, "num_epochs": 2.0},
                              []) is None


def test_mean_std():
  assert compare.mean_std([1.0, 2.0, 3.0, None]) == (2.0, 1.0, 3)
  assert compare.mean_std([5]) == (5.0, None, 1)
  assert compare.mean_std([None]) == (None, None, 0)
  assert compare.mean_std([]) == (None, None, 0)
  mean, std, n = compare.mean_std([0.5, 0.7])
  assert (mean, n) == (pytest.approx(0.6), 2)
  assert std == pytest.approx(math.sqrt(0.02))  # Sample std: n - 1.


def test_summarize_inits_groups_by_init_in_order_of_appearance():
  runs = [_run("mimetic", 0, [0.8]), _run("default", 0, [0.5]),
          _run("mimetic", 1, [0.9], finished=False),
          _run("default", 1, [0.7])]
  result = compare.summarize_inits(runs, fractions=(0.5,))
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
  runs = [_run("default", 0, [0.4, 0.5, 0.6, 0.5]),
          _run("default", 1, [0.5, 0.6, 0.7, 0.7]),
          _run("mimetic", 0, [0.6, 0.7, 0.8, 0.8]),
          _run("mimetic", 1, [0.7, 0.8, 0.9, 0.9])]
  runs[0]["wall_seconds"] = 65
  runs[1]["wall_seconds"] = 3725
  runs[3]["status"] = "failed (exit 1)"
  text = compare.render_markdown(
      title="default vs mimetic on configs/cifar10.py:smoke",
      metric=compare.ACCURACY, runs=runs, command="python -m x --a",
      report_command="python -m x --report_only", total_steps=12,
      notes=["A note."])
  assert text.startswith(
      "# Comparison: default vs mimetic on configs/cifar10.py:smoke\n")
  assert "Produced by:\n\n```\npython -m x --a\n```" in text
  assert "Report rebuilt by:\n\n```\npython -m x --report_only\n```" in text
  assert "**eval accuracy (%)**, higher is better" in text
  assert "(12 steps)" in text and "\nA note.\n" in text
  assert _cells(text, "init") == [
      "init", "seeds", "final", "best", "at 25 % (step 3)",
      "at 50 % (step 6)", "at 75 % (step 9)", "at 100 % (step 12)",
      "final − default"]
  assert _cells(text, "default") == [
      "default", "0,1", "60.00 ± 14.14", "65.00 ± 7.07", "45.00 ± 7.07",
      "55.00 ± 7.07", "65.00 ± 7.07", "60.00 ± 14.14", "—"]
  assert _cells(text, "mimetic") == [
      "mimetic", "0,1", "85.00 ± 7.07", "85.00 ± 7.07", "65.00 ± 7.07",
      "75.00 ± 7.07", "85.00 ± 7.07", "85.00 ± 7.07", "+25.00"]
  assert _cells(text, "run") == [
      "run", "init", "seed", "final", "best (step)", "steps", "epochs",
      "wall time", "status"]
  assert _cells(text, "default_seed0") == [
      "default_seed0", "default", "0", "50.00", "60.00 (9)", "12 / 12",
      "2.00", "1m05s", "finished"]
  assert _cells(text, "default_seed1")[7] == "1h02m"
  assert _cells(text, "mimetic_seed0")[7] == "—"
  assert _cells(text, "mimetic_seed1")[8] == "failed (exit 1)"
  assert text.endswith(
      "![eval accuracy (%) against epoch](accuracy.png)\n")
  # Without a separate report command, no "rebuilt" section.
  plain = compare.render_markdown(title="t", metric=compare.ACCURACY,
                                  runs=runs, command="c", report_command="c")
  assert "Report rebuilt by" not in plain and "Produced by" in plain


def test_render_markdown_unfinished_and_single_seed():
  runs = [_run("default", 0, [0.4, 0.5, 0.6, 0.5]),
          _run("mimetic", 0, [0.6, 0.8, 0.8, 0.9]),
          _run("mimetic", 1, [0.7, 0.8], finished=False)]
  text = compare.render_markdown(title="t", metric=compare.ACCURACY,
                                 runs=runs, total_steps=12)
  assert _cells(text, "default")[1:4] == ["0", "50.00 (n=1)", "60.00 (n=1)"]
  assert _cells(text, "mimetic") == [
      "mimetic", "0,1 (1 finished)", "85.00 ± 7.07", "85.00 ± 7.07",
      "65.00 ± 7.07", "80.00 ± 0.00", "80.00 (n=1)", "90.00 (n=1)",
      "+35.00"]
  assert _cells(text, "mimetic_seed1")[3:] == [
      "80.00", "80.00 (6)", "6 / 12", "1.00", "—", "incomplete"]


def test_render_markdown_headers_give_the_step_actually_used():
  """Sparse or uneven evals: the header says which record a column holds."""
  runs = [_run("default", 0, [0.5, 0.6, 0.7, 0.8]),
          _run("mimetic", 0, [0.5, 0.6, 0.7], steps=(4, 8, 12))]
  text = compare.render_markdown(title="t", metric=compare.ACCURACY,
                                 runs=runs, total_steps=12)
  # Default evals at 3, 6, 9, 12; mimetic at 4, 8, 12 (for 50 %, i.e. step
  # 6, steps 4 and 8 tie, so the earlier).
  assert _cells(text, "init")[4:8] == [
      "at 25 % (steps 3–4)", "at 50 % (steps 4–6)", "at 75 % (steps 8–9)",
      "at 100 % (step 12)"]
  only_final = [_run("default", 0, [2.0], metric=compare.BITS_PER_BYTE,
                     steps=(12,))]
  text = compare.render_markdown(title="t", metric=compare.BITS_PER_BYTE,
                                 runs=only_final, total_steps=12)
  assert _cells(text, "init")[4] == "at 25 % (step 12)"


def test_render_markdown_bits_per_byte():
  runs = [_run("default", 0, [3.0, 2.0, 2.5, 2.25],
               metric=compare.BITS_PER_BYTE),
          _run("mimetic", 0, [2.5, 2.0, 1.75, 2.0],
               metric=compare.BITS_PER_BYTE)]
  text = compare.render_markdown(title="t", metric=compare.BITS_PER_BYTE,
                                 runs=runs)
  assert "**eval bits per byte**, lower is better" in text
  assert _cells(text, "default")[2:4] == ["2.2500 (n=1)", "2.0000 (n=1)"]
  assert _cells(text, "mimetic")[-1] == "-0.2500"  # Negative: mimetic wins.
  assert _cells(text, "mimetic_seed0")[4] == "1.7500 (9)"
  assert text.endswith(
      "![eval bits per byte against epoch](bits_per_byte.png)\n")


def test_metric_for_task():
  assert compare.metric_for_task("image") is compare.ACCURACY
  assert compare.metric_for_task("lm") is compare.BITS_PER_BYTE
  assert compare.ACCURACY.plot_file == "accuracy.png"
  assert compare.BITS_PER_BYTE.plot_file == "bits_per_byte.png"
  assert compare.BITS_PER_BYTE.better(1.0, 2.0)
  assert compare.ACCURACY.better(2.0, 1.0)
  assert compare.ACCURACY.format(0.1234) == "12.34"
  assert compare.BITS_PER_BYTE.format(1.23456) == "1.2346"
  assert compare.ACCURACY.format(math.nan) == "—"
  with pytest.raises(compare.CompareError, match="Unknown task 'video'"):
    compare.metric_for_task("video")


def test_parse_seeds():
  assert compare.parse_seeds("0, 1,2") == [0, 1, 2]
  assert compare.parse_seeds("-1") == [-1]
  for text, message in (("", "--seeds is empty"), (" ", "--seeds is empty"),
                        ("0,a", "'a' is not an integer"),
                        ("0,,1", "'' is not an integer"),
                        ("1,2,1", "repeats a seed")):
    with pytest.raises(compare.CompareError, match=message):
      compare.parse_seeds(text)


def test_parse_inits():
  assert compare.parse_inits("default, mimetic", INITS) == ["default",
                                                            "mimetic"]
  for text, message in (("", "--inits is empty"), (",", "--inits is empty"),
                        ("default,xavier", r"unknown init\(s\) \['xavier'\]"),
                        ("mimetic,mimetic", "repeats an init")):
    with pytest.raises(compare.CompareError, match=message):
      compare.parse_inits(text, INITS)


def test_parse_fractions():
  assert compare.parse_fractions("0.5,0.25,1,0.5") == [0.25, 0.5, 1.0]
  for text in ("", "0", "0.5,1.5", "half"):
    with pytest.raises(compare.CompareError, match="in \\(0, 1\\]"):
      compare.parse_fractions(text)


def test_config_differences():
  recorded = {"init": "mimetic", "seed": 0, "learning_rate": 1e-3,
              "model": {"width": 32, "depth": 2},
              "mimetic": {"qk": [0.7, 0.7]}, "initial": 1}
  wanted = {"init": "default", "seed": 1, "learning_rate": 3e-3,
            "model": {"width": 32}, "mimetic": {"qk": None}, "extra": 1,
            "initial": 2}
  assert compare.config_differences(recorded, wanted) == [
      ("extra", "<absent>", 1), ("initial", 1, 2),
      ("learning_rate", 1e-3, 3e-3), ("mimetic.qk", [0.7, 0.7], None),
      ("model.depth", 2, "<absent>")]
  # Ignoring a group ignores its sub-keys, not keys that merely start alike.
  assert [d[0] for d in compare.config_differences(
      recorded, wanted, ignore=("model", "init", "seed"))] == [
          "extra", "initial", "learning_rate", "mimetic.qk"]
  assert compare.config_differences(recorded, recorded) == []


def test_config_overrides_are_passed_on_unchanged():
  argv = ["--config", "configs/cifar10.py:smoke", "--config.a=1",
          "--config.b", "2", "--noconfig.flag", "--config.flag", "--seeds=0",
          "-config.c", "3", "--workdir", "w"]
  overrides = compare.config_overrides(argv, lambda key: key == "flag")
  assert overrides == ["--config.a=1", "--config.b", "2", "--noconfig.flag",
                       "--config.flag", "-config.c", "3"]
  assert compare.overridden_keys(overrides) == ["a", "b", "flag", "flag", "c"]


# ------------------------------------------- workdirs, without training ---


def _write_run(workdir: pathlib.Path, init: str, seed: int, values, *,
               task="image", key="eval_accuracy", finished=True, **config):
  run_dir = workdir / compare.run_name(init, seed)
  run_dir.mkdir(parents=True)
  config = {"task": task, "init": init, "seed": seed, "total_steps": 12,
            "learning_rate": 1e-3, **config}
  (run_dir / "config.json").write_text(json.dumps(config))
  records = _evals(values, key)
  (run_dir / "metrics.jsonl").write_text(
      "".join(json.dumps(r) + "\n" for r in records))
  if finished:
    (run_dir / "final_metrics.json").write_text(
        json.dumps({"step": records[-1]["step"], key: values[-1]}))
  return run_dir


def test_read_jsonl_skips_a_torn_last_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1}\n\n{"step": 2, "eval_acc')
  assert compare.read_jsonl(path) == [{"step": 1}]
  assert compare.read_jsonl(tmp_path / "absent.jsonl") == []


def test_find_run_dirs_and_check_consistent(tmp_path):
  _write_run(tmp_path, "mimetic", 1, [0.5])
  _write_run(tmp_path, "default", 0, [0.5])
  (tmp_path / "notes").mkdir()
  (tmp_path / "default_seed2").mkdir()  # Never started: no config.json.
  runs = compare.find_run_dirs(tmp_path)
  assert [(r.init, r.seed) for r in runs] == [("default", 0), ("mimetic", 1)]
  assert runs[0].final == {"step": 3, "eval_accuracy": 0.5}
  assert compare.find_run_dirs(tmp_path / "absent") == []

  wanted = {"task": "image", "init": "mimetic", "seed": 0, "total_steps": 12,
            "learning_rate": 1e-3}
  compare.check_consistent(runs, wanted, tmp_path)  # init, seed may differ.
  compare.check_consistent(runs, None, tmp_path)
  with pytest.raises(compare.CompareError) as error:
    compare.check_consistent(runs, dict(wanted, learning_rate=3e-3), tmp_path)
  message = str(error.value)
  assert ("default_seed0 was made with a different config than this "
          "command") in message
  assert "learning_rate: 0.001 (default_seed0) vs 0.003 (wanted)" in message
  assert "Use a new --workdir" in message

  _write_run(tmp_path, "trunc_normal", 0, [0.5], learning_rate=3e-3)
  with pytest.raises(compare.CompareError,
                     match=r"0\.003 \(trunc_normal_seed0\) vs 0\.001 "
                     r"\(default_seed0\)"):
    compare.check_consistent(compare.find_run_dirs(tmp_path), None, tmp_path)


def test_check_consistent_refuses_a_misnamed_run(tmp_path):
  run_dir = _write_run(tmp_path, "default", 0, [0.5])
  run_dir.rename(tmp_path / "mimetic_seed0")
  with pytest.raises(compare.CompareError,
                     match="trained with init='default', seed=0, which its "
                     "name does not say"):
    compare.check_consistent(compare.find_run_dirs(tmp_path), None, tmp_path)


def test_write_report_for_language_models(tmp_path):
  for seed, values in ((0, [3.0, 2.5]), (1, [3.2, 2.7])):
    _write_run(tmp_path, "default", seed, values, task="lm",
               key="eval_bits_per_byte")
  _write_run(tmp_path, "mimetic", 0, [2.9, 2.4], task="lm",
             key="eval_bits_per_byte", finished=False)
  runs = compare.find_run_dirs(tmp_path)
  results, plot = compare.write_report(
      tmp_path, runs, title="t", fractions=(0.5, 1.0), command="c",
      report_command=None)
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
      "6 / 12", "1.00", "—", "incomplete"]


def test_write_report_without_started_runs(tmp_path):
  assert compare.write_report(tmp_path, [], title="t", fractions=(1.0,),
                              command=None, report_command=None) is None
  assert not list(tmp_path.iterdir())


# ----------------------------------------------------------- end to end ---


def _command(*args: str) -> list[str]:
  return [sys.executable, "-m", "mimetic_jax.compare", *args]


def _compare(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(_command(*args), cwd=REPO_ROOT, env=ENV,
                        capture_output=True, text=True, timeout=900,
                        check=False)


def _interrupt(args, run: str, progress: str) -> tuple[int, str]:
  """Runs the comparison, sends SIGTERM once `run`'s output shows
  `progress`; returns (exit code, output)."""
  process = subprocess.Popen(_command(*args), cwd=REPO_ROOT, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
  output = []
  for line in process.stdout:
    output.append(line)
    if line.startswith(f"[{run}] ") and progress in line:
      process.send_signal(signal.SIGTERM)
  return process.wait(timeout=60), "".join(output)


def _records(run_dir: pathlib.Path) -> list[dict]:
  return compare.read_jsonl(run_dir / "metrics.jsonl")


def _snapshot(workdir: pathlib.Path) -> dict[str, bytes]:
  """The comparison's files and every run's, byte for byte."""
  files = [workdir / "results.md", workdir / compare.COMMAND_FILE] + [
      workdir / run / name for run in RUNS
      for name in ("metrics.jsonl", "config.json", "final_metrics.json")]
  return {str(f.relative_to(workdir)): f.read_bytes() for f in files}


@pytest.fixture(scope="module")
def comparison(image_folder, tmp_path_factory) -> types.SimpleNamespace:
  """One comparison's life, each stage once, in order:

  interrupted: SIGTERM while the last run (mimetic_seed1) trains.
  resumed: the same command again: skips three, resumes the fourth.
  rerun: the same command again: nothing to train.
  refused: the same command with another learning rate.
  report_only: `--report_only` after deleting results.md and the plot.
  Each `after_<stage>` is a byte snapshot of the comparison's files after
  it.
  """
  root = tmp_path_factory.mktemp("compare")
  workdir = root / "comparison"
  args = ("--config", "configs/cifar10.py:smoke", "--seeds", "0,1",
          "--inits", "default,mimetic", "--workdir", str(workdir),
          f"--config.dataset.path={image_folder}",
          f"--config.dataset.data_dir={root / 'tfds'}", *TINY_OVERRIDES)
  stages = types.SimpleNamespace(workdir=workdir, args=args)
  stages.interrupted = _interrupt(args, "mimetic_seed1", " step 2/12 |")
  stages.resumed = _compare(*args)
  stages.after_resumed = _snapshot(workdir)
  stages.rerun = _compare(*args)
  stages.after_rerun = _snapshot(workdir)
  stages.refused = _compare(*args, "--config.learning_rate=0.01")
  stages.after_refused = _snapshot(workdir)
  (workdir / "results.md").unlink()
  (workdir / "accuracy.png").unlink()
  stages.report_only = _compare("--workdir", str(workdir), "--report_only")
  return stages


@pytest.mark.slow
def test_interrupted_comparison_saves_and_stops(comparison):
  code, output = comparison.interrupted
  assert code == 143, output
  for index, run in enumerate(RUNS[:3], 1):
    assert f"[{run}] ({index}/4) training in" in output
    assert f"[{run}] ({index}/4) finished." in output
  assert re.search(r"^\[mimetic_seed1\] .*Received SIGTERM: saved step",
                   output, re.M), output
  assert ("[mimetic_seed1] (4/4) stopped by SIGTERM (exit code 0); rerun the "
          "same command to resume.") in output
  assert "Traceback" not in output


@pytest.mark.slow
def test_rerun_skips_finished_runs_and_resumes_the_interrupted_one(
    comparison):
  _, first = comparison.interrupted
  stopped = int(first.split("Received SIGTERM: saved step ")[1].split()[0])
  assert 2 <= stopped < 12
  result = comparison.resumed
  assert result.returncode == 0, result.stdout + result.stderr
  for index, run in enumerate(RUNS[:3], 1):
    assert f"[{run}] ({index}/4) done, skipping" in result.stdout
    assert f"[{run}] Workdir" not in result.stdout  # No trainer started.
  assert "[mimetic_seed1] (4/4) resuming in" in result.stdout
  assert f"at step {stopped}." in result.stdout
  assert "[mimetic_seed1] (4/4) finished." in result.stdout
  # Resumed, not restarted: every step logged once, across two attempts.
  records = _records(comparison.workdir / "mimetic_seed1")
  assert [r["step"] for r in records if "train_loss" in r] == list(
      range(1, 13))
  assert [r["step"] for r in records if "eval_accuracy" in r] == [3, 6, 9, 12]
  for run in RUNS:
    wall = json.loads(
        (comparison.workdir / run / compare.WALL_TIME_FILE).read_text())
    assert wall["attempts"] == (2 if run == "mimetic_seed1" else 1)
    assert wall["wall_seconds"] > 0


@pytest.mark.slow
def test_results_match_the_runs(comparison):
  workdir = comparison.workdir
  text = comparison.after_resumed["results.md"].decode()
  assert text.startswith(
      "# Comparison: default vs mimetic on configs/cifar10.py:smoke\n")
  assert "python -m mimetic_jax.compare --config configs/cifar10.py:smoke" \
      in text
  assert "higher is better" in text and "(12 steps)" in text
  assert "not finished" not in text
  assert _cells(text, "init")[4:8] == [
      "at 25 % (step 3)", "at 50 % (step 6)", "at 75 % (step 9)",
      "at 100 % (step 12)"]
  finals = {}
  for run in RUNS:
    final = json.loads((workdir / run / "final_metrics.json").read_text())
    evals = [r for r in _records(workdir / run) if "eval_accuracy" in r]
    assert final["step"] == 12 and evals[-1]["step"] == 12
    assert final["eval_accuracy"] == evals[-1]["eval_accuracy"]
    finals[run] = final["eval_accuracy"]
    best = max(evals, key=lambda r: r["eval_accuracy"])["eval_accuracy"]
    cells = _cells(text, run)
    assert cells[3] == f"{100 * final['eval_accuracy']:.2f}"
    assert cells[4].startswith(f"{100 * best:.2f} (")
    assert cells[5:7] == ["12 / 12", "2.00"]
    assert cells[8] == "finished"
  for init in ("default", "mimetic"):
    values = [100 * finals[f"{init}_seed{s}"] for s in (0, 1)]
    cells = _cells(text, init)
    assert cells[1] == "0,1"
    assert cells[2] == (f"{statistics.mean(values):.2f} ± "
                        f"{statistics.stdev(values):.2f}")
    assert cells[7] == cells[2]  # 100 % of the budget is the final eval.
  delta = (statistics.mean([finals["mimetic_seed0"], finals["mimetic_seed1"]])
           - statistics.mean([finals["default_seed0"],
                              finals["default_seed1"]]))
  assert _cells(text, "mimetic")[8] == f"{100 * delta:+.2f}"
  assert not (workdir / "bits_per_byte.png").exists()
  saved = json.loads((workdir / compare.COMMAND_FILE).read_text())
  assert saved["inits"] == ["default", "mimetic"] and saved["seeds"] == [0, 1]
  assert saved["overrides"] == list(comparison.args[8:])


@pytest.mark.slow
def test_rerun_of_a_finished_comparison_trains_nothing(comparison):
  result = comparison.rerun
  assert result.returncode == 0, result.stdout + result.stderr
  for index, run in enumerate(RUNS, 1):
    assert f"[{run}] ({index}/4) done, skipping" in result.stdout
  assert "training in" not in result.stdout
  assert "resuming in" not in result.stdout
  assert comparison.after_rerun == comparison.after_resumed


@pytest.mark.slow
def test_rerun_with_another_config_is_refused_before_training(comparison):
  result = comparison.refused
  assert result.returncode == 1
  assert "different config than this command" in result.stderr
  assert "learning_rate: 0.001 (default_seed0) vs 0.01 (wanted)" in \
      result.stderr
  assert "Use a new --workdir" in result.stderr
  assert "Traceback" not in result.stderr
  assert "Comparing" not in result.stdout
  assert comparison.after_refused == comparison.after_resumed


@pytest.mark.slow
def test_report_only_rebuilds_the_report(comparison):
  result = comparison.report_only
  assert result.returncode == 0, result.stdout + result.stderr
  assert "Workdir" not in result.stdout  # Nothing trained.
  workdir = comparison.workdir
  assert (workdir / "accuracy.png").read_bytes().startswith(b"\x89PNG")
  rebuilt = (workdir / "results.md").read_text()
  original = comparison.after_resumed["results.md"].decode()
  assert "Report rebuilt by:" in rebuilt and "--report_only" in rebuilt
  # The training command and every table are as before.
  assert original.split("Metric:")[0] in rebuilt
  assert original.split("## Per init")[1] == rebuilt.split("## Per init")[1]


@pytest.mark.slow
def test_failed_run_is_reported_and_the_exit_code_says_so(tmp_path):
  result = _compare("--config", "configs/cifar10.py:smoke", "--inits",
                    "default", "--seeds", "0", "--workdir",
                    str(tmp_path / "comparison"),
                    f"--config.dataset.path={tmp_path / 'nowhere'}",
                    f"--config.dataset.data_dir={tmp_path / 'tfds'}",
                    *TINY_OVERRIDES)
  assert result.returncode == 1
  assert "[default_seed0] (1/1) FAILED with exit code 1" in result.stdout
  assert "1 run(s) failed: default_seed0." in result.stdout
  text = (tmp_path / "comparison" / "results.md").read_text()
  cells = _cells(text, "default_seed0")
  assert cells[3:7] == ["—", "—", "— / 12", "—"]
  assert cells[8] == "failed (exit 1)"
  assert _cells(text, "default")[1:3] == ["0 (0 finished)", "—"]


@pytest.mark.parametrize("args, message", [
    (("--config.seed=3",), "--config.seed is set per run by the runner; use "
     "--seeds instead."),
    (("--inits", "default,xavier"), "unknown init(s) ['xavier']"),
    (("--seeds", "1,1"), "repeats a seed"),
    (("--config.lerning_rate=1",), 'Did you mean "learning_rate"'),
])
@pytest.mark.slow
def test_command_line_errors(args, message, tmp_path):
  result = _compare("--config", "configs/cifar10.py:smoke", "--workdir",
                    str(tmp_path / "comparison"), *args)
  assert result.returncode == 1
  assert message in result.stderr
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "comparison").exists()


@pytest.mark.slow
def test_config_is_required_unless_report_only(tmp_path):
  result = _compare("--workdir", str(tmp_path))
  assert result.returncode == 1
  assert "--config is required" in result.stderr
  result = _compare("--workdir", str(tmp_path / "empty"), "--report_only")
  assert result.returncode == 1
  assert "No runs to report" in result.stderr


@pytest.mark.slow
def test_language_model_comparison(tinyshakespeare_dir, tmp_path):
  """Two smoke runs on Tiny Shakespeare: judged by eval bits per byte."""
  workdir = tmp_path / "comparison"
  result = _compare("--config", "configs/tiny_shakespeare.py:smoke",
                    "--inits", "default,mimetic", "--seeds", "0",
                    "--workdir", str(workdir),
                    f"--config.dataset.manual_dir={tinyshakespeare_dir}",
                    f"--config.dataset.data_dir={tmp_path / 'tfds'}")
  assert result.returncode == 0, result.stdout + result.stderr
  assert (workdir / "bits_per_byte.png").read_bytes().startswith(b"\x89PNG")
  assert not (workdir / "accuracy.png").exists()
  text = (workdir / "results.md").read_text()
  assert "**eval bits per byte**, lower is better" in text
  finals = {}
  for init in ("default", "mimetic"):
    final = json.loads(
        (workdir / f"{init}_seed0" / "final_metrics.json").read_text())
    finals[init] = final["eval_bits_per_byte"]
    cells = _cells(text, f"{init}_seed0")
    assert cells[3] == f"{finals[init]:.4f}"
    assert cells[5] == f"{final['step']} / {final['step']}"
    assert _cells(text, init)[2] == f"{finals[init]:.4f} (n=1)"
  assert _cells(text, "mimetic")[-1] == (
      f"{finals['mimetic'] - finals['default']:+.4f}")
