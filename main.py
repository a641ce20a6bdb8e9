r"""Trains a ViT or a causal LM with mimetic (or default) initialization.

    python main.py --config configs/cifar10.py:smoke
    python main.py --config configs/cifar10.py --config.init=default \
        --workdir workdirs/cifar10_default

Any config key can be overridden with `--config.KEY=VALUE`; unknown keys are
rejected. Rerunning with the same workdir resumes from its last checkpoint.
As N processes (one per host), start each with the same
`--coordinator_address=HOST:PORT --num_processes=N` and its own
`--process_id=I`; every process reads only its shard of the data, process 0
writes the logs.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from mimetic_jax import cli

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Config file, optionally with a preset: configs/cifar10.py:smoke.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "Where checkpoints and metrics go; default: "
  "workdirs/<config>[_<preset>]_<init>_seed<seed>.",
)
_COORDINATOR_ADDRESS = flags.DEFINE_string(
  "coordinator_address",
  None,
  "Training as several processes (jax.distributed): HOST:PORT of process "
  "0, with --num_processes and --process_id. Unset on one host, and on "
  "Cloud TPU, where JAX finds its hosts itself.",
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "Processes in the run (with --coordinator_address)."
)
_PROCESS_ID = flags.DEFINE_integer(
  "process_id", None, "This process: 0 .. num_processes - 1."
)
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    # Progress goes to stdout; keep library INFO chatter (orbax writes a dozen
    # lines per checkpoint) out of the way unless asked for with -v 0.
    logging.set_verbosity(logging.WARNING)
  cli.initialize_distributed(
    _COORDINATOR_ADDRESS.value, _NUM_PROCESSES.value, _PROCESS_ID.value
  )
  # Imported here, after flag parsing, so that --help is instant.
  import jax

  from mimetic_jax import metric_logging, train
  from mimetic_jax import workdir as workdir_lib

  config = _CONFIG.value
  workdir = _WORKDIR.value or workdir_lib.default_workdir(
    config_flags.get_config_filename(flags.FLAGS["config"]), config
  )
  logging.info("Config:\n%s", config)
  if jax.process_index() == 0:  # Only process 0 logs.
    metric_logging.log(f"Workdir: {workdir}")
  train.train_and_evaluate(config, workdir)


if __name__ == "__main__":
  cli.run(main)
