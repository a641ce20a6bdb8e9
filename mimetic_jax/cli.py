"""Command-line plumbing shared by `main.py` and the `python -m` tools.

`run(main)` is what every tool's `if __name__ == '__main__'` calls: absl flag
parsing, then `main`, with user mistakes (`errors.UserError`, a misspelt
`--config.KEY`, running out of accelerator memory) reported as one paragraph
and a non-zero exit instead of a traceback.
"""

from collections.abc import Callable, Sequence
import sys

from absl import app, flags

from mimetic_jax.errors import UserError


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a one-paragraph error for a `--config.KEY`
  override that names no key of the config."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # absl's own parsing errors, and config files'.
    sys.exit(
      f"Error: {_without_traceback(str(e))}\nPass --helpshort or --helpfull "
      "to see help on flags."
    )
  except (KeyError, AttributeError) as e:  # What ml_collections raises.
    reason = e
    while isinstance(reason, BaseException) and reason.args:  # Unwrap.
      reason = reason.args[0]
    reason = str(reason).replace("\n", ". ")
    sys.exit(
      f"Error: a --config.KEY=VALUE override names a key the config does "
      f"not have ({reason}). Keys are dotted paths into what the config "
      "file's get_config() returns (e.g. --config.dataset.max_train_"
      "examples=1000); check the spelling against the config file, and "
      "configs/image_base.py or configs/lm_base.py for the shared keys."
    )


def _without_traceback(message: str) -> str:
  """A flag error whose text embeds a traceback (ml_collections formats the
  config file's exception that way) -> its first and last lines."""
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  if not any(line.startswith("Traceback (most recent") for line in lines):
    return message
  return f"{lines[0]} {lines[-1]}"


def _config_file_message(error: OSError) -> str | None:
  """The message for a `--config` file that cannot be loaded (which
  ml_collections reports lazily, as an OSError), else None."""
  text = str(error)
  if "Failed loading config file" not in (text.splitlines() or [""])[0]:
    return None
  tried = [line.strip() for line in text.splitlines()[1:] if line.strip()]
  return (
    f"cannot load the --config file ({' '.join(tried)}). Pass the path of "
    "a config file, relative to the current folder or absolute, e.g. "
    "--config configs/cifar10.py:smoke."
  )


def _out_of_memory_message(error: Exception) -> str | None:
  """The fix for an accelerator (or host) out-of-memory error, else None."""
  if "RESOURCE_EXHAUSTED" not in str(error):
    return None
  import jax  # pylint: disable=g-import-not-at-top

  return (
    f"out of memory on {jax.devices()[0].device_kind} "
    f"({str(error).splitlines()[0][:200]}). The model, batch and "
    "activations do not fit: lower --config.batch_size (global), use "
    "--config.model.dtype=bfloat16 on an accelerator, or add devices. "
    "Checkpoints already saved in the workdir are kept; rerunning resumes "
    "from the latest."
  )


def run(main: Callable[[Sequence[str]], None]) -> None:
  """`app.run(main)` with user mistakes reported without a traceback."""

  def main_reporting_user_errors(argv: Sequence[str]) -> None:
    try:
      main(argv)
    except UserError as e:
      sys.exit(f"Error: {e}")
    except OSError as e:
      message = _config_file_message(e)
      if message is None:
        raise
      sys.exit(f"Error: {message}")
    except Exception as e:  # pylint: disable=broad-except
      message = _out_of_memory_message(e)
      if message is None:
        raise
      sys.exit(f"Error: {message}")

  app.run(main_reporting_user_errors, flags_parser=parse_flags)


def initialize_distributed(
  coordinator_address: str | None,
  num_processes: int | None,
  process_id: int | None,
) -> None:
  """Starts JAX's distributed runtime for a run as several processes.

  With the three flags, `jax.distributed.initialize` gets them (process 0
  serves at `coordinator_address`, HOST:PORT). Without them, on a Cloud TPU
  VM (libtpu installed) JAX finds its hosts itself, as
  `jax.distributed.initialize()` does; elsewhere the run is one process.
  Must run before anything asks JAX for its devices.
  """
  given = (coordinator_address, num_processes, process_id)
  if all(value is None for value in given):
    import importlib.util  # pylint: disable=g-import-not-at-top

    if importlib.util.find_spec("libtpu") is not None:
      import jax  # pylint: disable=g-import-not-at-top

      jax.distributed.initialize()
    return
  if any(value is None for value in given):
    raise UserError(
      "--coordinator_address, --num_processes and --process_id go together "
      f"(got {coordinator_address!r}, {num_processes!r}, {process_id!r}): "
      "start every process with the same address (HOST:PORT of process 0) "
      "and count, and its own id in 0 .. num_processes - 1."
    )
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise UserError(
      f"--process_id={process_id} must be in 0 .. --num_processes - 1 "
      f"(--num_processes={num_processes})."
    )
  import jax  # pylint: disable=g-import-not-at-top

  jax.distributed.initialize(coordinator_address, num_processes, process_id)
