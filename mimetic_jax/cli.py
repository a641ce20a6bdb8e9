"""Command-line plumbing shared by `main.py` and the `python -m` tools."""

import sys

from absl import app


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing (pass as `app.run(main, flags_parser=parse_flags)`),
  with a one-paragraph error instead of a traceback for a `--config.KEY`
  override that names no key of the config."""
  try:
    return app.parse_flags_with_usage(argv)
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
        "configs/image_base.py or configs/lm_base.py for the shared keys.")
