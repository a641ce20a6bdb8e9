"""Init comparisons: train every (init, seed) pair, then tabulate and plot.

Run it as `python -m mimetic_jax.compare` (`__main__.py` has the usage).
`runner` trains each pair as its own `main.py` process, `workdirs` reads
and checks what the runs left on disk, `summary` computes the numbers and
`report` writes `results.md` and the plot; `options` parses the flags.
"""

from mimetic_jax.compare.options import override_args
from mimetic_jax.compare.options import parse_fractions
from mimetic_jax.compare.options import parse_inits
from mimetic_jax.compare.options import parse_seeds
from mimetic_jax.compare.report import markdown_table
from mimetic_jax.compare.report import render_markdown
from mimetic_jax.compare.report import write_report
from mimetic_jax.compare.runner import compare
from mimetic_jax.compare.summary import ACCURACY
from mimetic_jax.compare.summary import BITS_PER_BYTE
from mimetic_jax.compare.summary import budget_steps
from mimetic_jax.compare.summary import DEFAULT_FRACTIONS
from mimetic_jax.compare.summary import eval_curve
from mimetic_jax.compare.summary import mean_std
from mimetic_jax.compare.summary import Metric
from mimetic_jax.compare.summary import metric_for_task
from mimetic_jax.compare.summary import summarize_inits
from mimetic_jax.compare.summary import summarize_run
from mimetic_jax.compare.summary import value_at_fraction
from mimetic_jax.compare.workdirs import check_consistent
from mimetic_jax.compare.workdirs import COMMAND_FILE
from mimetic_jax.compare.workdirs import config_differences
from mimetic_jax.compare.workdirs import find_run_dirs
from mimetic_jax.compare.workdirs import format_differences
from mimetic_jax.compare.workdirs import load_run_dir
from mimetic_jax.compare.workdirs import read_jsonl
from mimetic_jax.compare.workdirs import run_name
from mimetic_jax.compare.workdirs import RunDir
from mimetic_jax.compare.workdirs import WALL_TIME_FILE

__all__ = [
    "ACCURACY", "BITS_PER_BYTE", "COMMAND_FILE", "DEFAULT_FRACTIONS",
    "Metric", "RunDir", "WALL_TIME_FILE", "budget_steps", "check_consistent",
    "compare", "config_differences", "eval_curve", "find_run_dirs",
    "format_differences", "load_run_dir", "markdown_table", "mean_std",
    "metric_for_task", "override_args", "parse_fractions", "parse_inits",
    "parse_seeds", "read_jsonl", "render_markdown", "run_name",
    "summarize_inits", "summarize_run", "value_at_fraction", "write_report"]
