"""Init comparisons: train every (init, seed) pair, then tabulate and plot.

Run it as `python -m mimetic_jax.compare` (`__main__.py` has the usage).
`runner` trains each pair as its own `main.py` process, `workdirs` reads
and checks what the runs left on disk, `summary` computes the numbers and
`report` writes `results.md` and the plot; `options` parses the flags.
"""

from mimetic_jax.compare.options import (
  override_args,
  parse_fractions,
  parse_inits,
  parse_seeds,
)
from mimetic_jax.compare.report import (
  markdown_table,
  render_markdown,
  write_report,
)
from mimetic_jax.compare.runner import compare
from mimetic_jax.compare.summary import (
  ACCURACY,
  BITS_PER_BYTE,
  DEFAULT_FRACTIONS,
  Metric,
  budget_steps,
  eval_curve,
  mean_std,
  metric_for_task,
  summarize_inits,
  summarize_run,
  value_at_fraction,
)
from mimetic_jax.compare.workdirs import (
  COMMAND_FILE,
  WALL_TIME_FILE,
  RunDir,
  check_consistent,
  config_differences,
  find_run_dirs,
  format_differences,
  load_run_dir,
  read_jsonl,
  run_name,
)

__all__ = [
  "ACCURACY",
  "BITS_PER_BYTE",
  "COMMAND_FILE",
  "DEFAULT_FRACTIONS",
  "Metric",
  "RunDir",
  "WALL_TIME_FILE",
  "budget_steps",
  "check_consistent",
  "compare",
  "config_differences",
  "eval_curve",
  "find_run_dirs",
  "format_differences",
  "load_run_dir",
  "markdown_table",
  "mean_std",
  "metric_for_task",
  "override_args",
  "parse_fractions",
  "parse_inits",
  "parse_seeds",
  "read_jsonl",
  "render_markdown",
  "run_name",
  "summarize_inits",
  "summarize_run",
  "value_at_fraction",
  "write_report",
]
