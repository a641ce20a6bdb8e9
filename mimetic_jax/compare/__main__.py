r"""Compare initializations: train every (init, seed) pair, then tabulate.

    python -m mimetic_jax.compare --config configs/cifar10.py:cpu \
        --seeds 0,1 --inits default,mimetic --workdir workdirs/compare_cpu \
        [--config.KEY=VALUE ...]
    python -m mimetic_jax.compare --workdir workdirs/compare_cpu --report_only

Every pair trains with otherwise identical settings (the config file, its
preset and the `--config.*` overrides, plus `--config.init=<init>` and
`--config.seed=<seed>`) in its own workdir `DIR/<init>_seed<seed>/`, each in
its own `main.py` process. Then:

* `DIR/results.md`: per-init summary (mean ± sample std over seeds of the
  final and the best eval metric, and the metric at 25/50/75/100 % of the
  step budget), per-run table, the command that produced it and the metric's
  direction.
* A plot of the eval metric against epoch for every run (one colour per init,
  one line style per seed): `DIR/accuracy.png` for image classification
  (eval accuracy, higher is better) and `DIR/bits_per_byte.png` for language
  models (`task='lm'`: eval bits per byte, lower is better).

Resuming: rerun the same command. A run whose `final_metrics.json` exists
(the trainer writes it only on completion) and whose recorded `config.json`
matches is skipped; an interrupted one (Ctrl-C or SIGTERM is passed on to
it, and it saves a checkpoint) is started again in its workdir, where the
trainer resumes from its last checkpoint. If `DIR` holds a run made with a
different config (ignoring `init` and `seed`), the runner refuses before
training anything: results in one `DIR` come from one config.
`--report_only` rebuilds `results.md` and the plot from the workdirs in `DIR`
without training (by default from every `<init>_seed<seed>` run found there).
"""

from collections.abc import Sequence
import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

from mimetic_jax import cli
from mimetic_jax.compare import options, runner, summary, workdirs
from mimetic_jax.errors import UserError
from mimetic_jax.models import INITS

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Config file with optional preset, as for main.py: "
  "configs/cifar10.py:cpu. Optional with --report_only.",
  lock_config=True,
)
_SEEDS = flags.DEFINE_string("seeds", "0,1", "Comma-separated seeds.")
_INITS = flags.DEFINE_string(
  "inits",
  "default,mimetic",
  "Comma-separated inits: default, mimetic, trunc_normal.",
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "Comparison folder; each run trains in <workdir>/<init>_seed<seed>/.",
)
_REPORT_ONLY = flags.DEFINE_bool(
  "report_only",
  False,
  "Only rebuild results.md and the plot from the "
  "runs in --workdir; train nothing.",
)
_FRACTIONS = flags.DEFINE_string(
  "fractions",
  ",".join(f"{f:g}" for f in summary.DEFAULT_FRACTIONS),
  "Fractions of the step budget at which to report the metric.",
)
flags.mark_flags_as_required(["workdir"])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  report_only = _REPORT_ONLY.value
  # With --report_only, no --inits / --seeds means every run found.
  inits = (
    options.parse_inits(_INITS.value, INITS)
    if _INITS.present or not report_only
    else None
  )
  seeds = (
    options.parse_seeds(_SEEDS.value)
    if _SEEDS.present or not report_only
    else None
  )
  fractions = options.parse_fractions(_FRACTIONS.value)
  config, config_arg, overrides = _CONFIG.value, None, []
  if config is None and not report_only:
    raise UserError(
      "--config is required (e.g. --config "
      "configs/cifar10.py:cpu) unless --report_only."
    )
  if config is not None:
    config_arg = config_flags.get_config_filename(flags.FLAGS["config"])
    overridden = config_flags.get_override_values(flags.FLAGS["config"])
    fixed = [k for k in overridden if k in workdirs.PER_RUN_KEYS]
    if fixed:
      raise UserError(
        f"--config.{fixed[0]} is set per run by the runner; "
        f"use --{fixed[0]}s instead."
      )
    overrides = options.override_args(flags.FLAGS, "config")
    if not runner.MAIN_PY.exists():
      raise UserError(
        f"Cannot find the trainer {runner.MAIN_PY}; run the "
        "comparison from a checkout of the repository."
      )
  try:
    code = runner.compare(
      config=config,
      config_arg=config_arg,
      overrides=overrides,
      inits=inits,
      seeds=seeds,
      workdir=pathlib.Path(_WORKDIR.value),
      fractions=fractions,
      report_only=report_only,
      argv=sys.argv,
    )
  except KeyboardInterrupt:  # Between runs: nothing is training to stop.
    print(
      "Interrupted between runs; finished runs are kept. Rerun the same "
      "command to go on.",
      file=sys.stderr,
      flush=True,
    )
    code = 130
  sys.exit(code)


if __name__ == "__main__":
  # Config files import `configs.*` from the repository root, as under
  # main.py (whose folder Python puts on the path).
  if str(runner.MAIN_PY.parent) not in sys.path:
    sys.path.insert(0, str(runner.MAIN_PY.parent))
  cli.run(main)
