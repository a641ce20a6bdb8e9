"""Stopping a run whose loss or gradients are no longer finite.

`DivergenceCheck` reads each step's training loss and gradient norm one step
late: when step `s + 1` has been dispatched it fetches step `s`'s two
scalars, so one step stays in flight and the device never waits on the host.
Before a save or an evaluation the trainer calls `check()`, which reads the
current step at once, so no checkpoint ever holds a diverged state and a
rerun resumes from the last good one.
"""

import math

import jax

from mimetic_jax.checkpointing import Checkpointer
from mimetic_jax.errors import UserError

# What is checked: a non-finite loss, or a non-finite gradient anywhere
# (its global norm is then not finite either).
WATCHED = ("train_loss", "grad_norm")


def divergence_message(
  step: int, values: dict[str, float], last_saved: int | None, directory: str
) -> str:
  found = ", ".join(f"{name}={value}" for name, value in values.items())
  if last_saved is None:
    kept = "No checkpoint had been saved yet."
  else:
    kept = (
      f"Nothing after step {last_saved} was saved: the last good checkpoint "
      f"is kept in {directory}, and rerunning resumes from it."
    )
  return (
    f"Training diverged at step {step} ({found}). {kept} Change what "
    "made it diverge first, or the rerun will diverge again: likely a "
    "learning rate too high for this batch size and init (lower "
    "--config.learning_rate, or lengthen --config.warmup_epochs), no "
    "gradient clipping (--config.grad_clip_norm=1.0), a tiny AdamW "
    "epsilon (timm's ViT recipes use --config.adam_eps=1e-3), bfloat16 "
    "overflow (--config.model.dtype=float32), or corrupt inputs."
  )


class DivergenceCheck:
  """Raises `UserError` (see `divergence_message`) at the first step whose
  loss or gradient norm is not finite."""

  def __init__(self, checkpointer: Checkpointer) -> None:
    self._checkpointer = checkpointer
    self._pending: tuple[int, dict[str, jax.Array]] | None = None

  def record(self, step: int, metrics: dict[str, jax.Array]) -> None:
    """Checks the previously recorded step, then holds `step`'s metrics
    (device arrays, not yet computed) for the next call."""
    self.check()
    self._pending = (step, {name: metrics[name] for name in WATCHED})

  def check(self) -> None:
    """Checks the held step now (waiting for it if it is still running)."""
    if self._pending is None:
      return
    step, metrics = self._pending
    self._pending = None
    values = {name: float(x) for name, x in jax.device_get(metrics).items()}
    if all(math.isfinite(v) for v in values.values()):
      return
    self._checkpointer.wait()  # Saves in flight are of good states.
    raise UserError(
      divergence_message(
        step,
        values,
        self._checkpointer.latest_step,
        self._checkpointer.directory,
      )
    )
