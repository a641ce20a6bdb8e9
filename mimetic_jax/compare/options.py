"""The comparison command's values: seeds, inits, fractions, overrides.

Each parser turns one flag's text into checked values, raising `UserError`
with the fix; `override_args` turns the `--config.KEY=VALUE` overrides that
absl and ml_collections parsed back into arguments for each run's trainer.
"""

import ast
from collections.abc import Sequence
import enum

from absl import flags
from ml_collections import config_flags

from mimetic_jax.errors import UserError


def parse_seeds(text: str) -> list[int]:
  """'0,1,2' -> [0, 1, 2]; empty, non-integer or repeated seeds are errors."""
  parts = [p.strip() for p in text.split(",")] if text.strip() else []
  if not parts:
    raise UserError(
      "--seeds is empty; give a comma-separated list of "
      "integers, e.g. --seeds=0,1."
    )
  seeds = []
  for part in parts:
    try:
      seeds.append(int(part))
    except ValueError:
      raise UserError(
        f"--seeds={text!r}: {part!r} is not an integer; give a "
        "comma-separated list of integers, e.g. --seeds=0,1."
      ) from None
  if len(set(seeds)) != len(seeds):
    raise UserError(f"--seeds={text!r} repeats a seed; list each once.")
  return seeds


def parse_inits(text: str, known: Sequence[str]) -> list[str]:
  """'default,mimetic' -> ['default', 'mimetic'], checked against `known`."""
  inits = [p.strip() for p in text.split(",") if p.strip()]
  if not inits:
    raise UserError(
      f"--inits is empty; give a comma-separated list of "
      f"{', '.join(known)}, e.g. --inits=default,mimetic."
    )
  unknown = [i for i in inits if i not in known]
  if unknown:
    raise UserError(
      f"--inits={text!r}: unknown init(s) {unknown}; "
      f"choose from {', '.join(known)}."
    )
  if len(set(inits)) != len(inits):
    raise UserError(f"--inits={text!r} repeats an init; list each once.")
  return inits


def parse_fractions(text: str) -> list[float]:
  """'0.25,0.5,1' -> [0.25, 0.5, 1.0], sorted and deduplicated; each in
  (0, 1]."""
  try:
    fractions = [float(p) for p in text.split(",") if p.strip()]
  except ValueError:
    fractions = []
  if not fractions or not all(0 < f <= 1 for f in fractions):
    raise UserError(
      f"--fractions={text!r} must be a comma-separated list "
      "of numbers in (0, 1], e.g. 0.25,0.5,0.75,1."
    )
  return sorted(set(fractions))


def override_args(
  flag_values: flags.FlagValues = flags.FLAGS, name: str = "config"
) -> list[str]:
  """Arguments that make another `--<name>` flag parse the same overrides.

  From `config_flags.get_override_values`, so absl has already resolved
  `--config.KEY VALUE`, `--noconfig.KEY`, repeats and flag files: one
  argument per overridden key, in the order given. Booleans become
  `--config.KEY` / `--noconfig.KEY`, strings are passed verbatim, enums by
  name, and every other value (numbers, tuples, None, literals) as its
  Python repr, which its parser reads back exactly.

  Args:
    flag_values: where the config flag was defined and parsed.
    name: the config flag's name.

  Raises:
    UserError: for a value whose repr does not read back (e.g. a
      dataclass), which could not be passed on unchanged.
  """
  args = []
  overrides = config_flags.get_override_values(flag_values[name])
  for key, value in overrides.items():
    flag = flag_values[f"{name}.{key}"]
    kind = flag.flag_type()
    if kind == "bool":
      args.append(f"--{'' if value else 'no'}{flag.name}")
    elif kind == "string":
      args.append(f"--{flag.name}={value}")
    elif isinstance(value, enum.Enum):
      args.append(f"--{flag.name}={value.name}")
    else:
      text = repr(value)
      if kind not in ("int", "float"):
        try:
          same = ast.literal_eval(text) == value
        except (SyntaxError, ValueError):
          same = False
        if not same:
          raise UserError(
            f"--{flag.name}: cannot pass the value {text} on "
            "to each run; set it in the config file instead."
          )
      args.append(f"--{flag.name}={text}")
  return args
