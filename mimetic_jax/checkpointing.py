"""Orbax checkpoints in `workdir/checkpoints`, with preemption handling.

The checkpoint holds the whole train state (params, optimizer state, step).
Randomness and the data position are functions of the seed and the step (see
`steps.py`), so restoring the step restores them too.
"""

import os
import signal
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves every `every_steps` steps and on demand; restores the latest."""

  def __init__(self, workdir: str, *, every_steps: int, max_to_keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._every = every_steps
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             create=True))

  @property
  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, abstract_state: Any) -> Any:
    """Restores the latest checkpoint into the structure/shardings given."""
    step = self._manager.latest_step()
    return self._manager.restore(
        step, args=ocp.args.StandardRestore(abstract_state))

  def maybe_save(self, step: int, state: Any, *, force: bool = False) -> bool:
    """Saves when `step` is on the schedule, when forced, or on preemption."""
    due = force or (self._every > 0 and step % self._every == 0)
    due = due or self._manager.reached_preemption(step)
    if not due or step in self._manager.all_steps():
      return False
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
    return True

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


class StopSignal:
  """Turns SIGTERM (preemption) and SIGINT (Ctrl-C) into a flag the train
  loop checks each step, so it can save before it exits."""

  def __init__(self):
    self.received: str | None = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if self.received:  # Second signal: give up immediately.
      raise KeyboardInterrupt
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) describing `tree`."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
