"""Orbax checkpoints in `workdir/checkpoints`, with preemption handling.

The checkpoint holds the whole train state (params, optimizer state, step).
Randomness and the data position are functions of the seed and the step (see
`steps.py`), so restoring the step restores them too.
"""

from collections.abc import Mapping
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from mimetic_jax.errors import UserError


class Checkpointer:
  """Saves every `every_steps` steps and on demand; restores the latest."""

  def __init__(self, workdir: str, *, every_steps: int, max_to_keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._every = every_steps
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True
      ),
    )

  @property
  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, abstract_state: Any) -> Any:
    """Restores the latest checkpoint into the structure/shardings given."""
    step = self._manager.latest_step()
    return self._manager.restore(
      step, args=ocp.args.StandardRestore(abstract_state)
    )

  def due(self, step: int) -> bool:
    """Whether `step` is on the schedule (or a preemption) and not saved.

    Not orbax's `save_interval_steps` / `should_save`: that also saves at
    the first step it is asked about, and 0 (= only at the end) is an error.
    """
    on_schedule = self._every > 0 and step % self._every == 0
    return (
      on_schedule or self._manager.reached_preemption(step)
    ) and step not in self._manager.all_steps()

  def maybe_save(self, step: int, state: Any, *, force: bool = False) -> bool:
    """Saves when `step` is `due`, or when forced (unless already saved)."""
    if step in self._manager.all_steps() or not (force or self.due(step)):
      return False
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
    return True

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


# ----------------------------------------------------------------------------
# Reading a finished or running trainer workdir (pictures, sampling).
# ----------------------------------------------------------------------------


def checkpoint_steps(workdir: str) -> list[int]:
  """Steps of the finalized checkpoints in `workdir/checkpoints`, sorted."""
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  if not os.path.isdir(directory):
    return []
  return sorted(ocp.path.step.checkpoint_steps(directory))


def restore_params(
  workdir: str,
  step: int | None = None,
  *,
  device: jax.Device | None = None,
  hint: str = "",
) -> tuple[Any, int]:
  """Reads only the params of a trainer checkpoint; returns `(params, step)`.

  The tree structure, shapes and dtypes come from the checkpoint's own
  metadata, so no model needs to be built first, and the optimizer state is
  never read. Arrays are placed on `device` (default `jax.devices()[0]`)
  whatever device count saved them.

  Args:
    workdir: a trainer workdir (`checkpoints/<step>/default` inside).
    step: which checkpoint; None = the latest.
    device: where the params go.
    hint: appended to the error when there is no checkpoint at all (e.g. the
      command that trains one).

  Raises:
    UserError: no finalized checkpoint, or not the step asked for.
  """
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  steps = checkpoint_steps(workdir)
  if not steps:
    raise UserError(
      f"No finalized checkpoint in {directory}. A training run saves one "
      "every checkpoint_every_steps steps and when it ends or is stopped "
      "with SIGTERM / Ctrl-C; a run that crashed before its first save, or "
      f"a checkpoint still being written, leaves none. {hint}".rstrip()
    )
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise UserError(
      f"No checkpoint for step {step} in {directory}; the finalized steps "
      f"there are {steps}. Pass one of them, or none for the latest."
    )
  path = os.path.join(directory, str(step), "default")
  sharding = jax.sharding.SingleDeviceSharding(device or jax.devices()[0])
  with ocp.PyTreeCheckpointer() as checkpointer:
    metadata = checkpointer.metadata(path)
    tree = getattr(metadata, "item_metadata", metadata)
    tree = getattr(tree, "tree", tree)
    if not isinstance(tree, Mapping) or "params" not in tree:
      raise UserError(
        f"The checkpoint {path} holds no 'params' entry (found "
        f"{list(tree) if isinstance(tree, Mapping) else type(tree)}); it "
        "was not written by this project's trainer."
      )
    abstract = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(
        tuple(m.shape), m.dtype, sharding=sharding
      ),
      tree["params"],
    )
    restored = checkpointer.restore(
      path,
      args=ocp.args.PyTreeRestore(
        item={"params": abstract},
        restore_args={
          "params": jax.tree.map(
            lambda _: ocp.ArrayRestoreArgs(sharding=sharding), abstract
          )
        },
        partial_restore=True,
      ),
    )
  return restored["params"], step
