"""Orbax checkpoints in `workdir/checkpoints`, with preemption handling.

The checkpoint holds the whole train state (params, optimizer state, step).
Randomness and the data position are functions of the seed and the step (see
`steps.py`), so restoring the step restores them too.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
import contextlib
import os
import shutil
import time
from typing import Any

import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from mimetic_jax.errors import UserError


def _reason(error: Exception) -> str:
  """`'Type: first line of the message'` of an exception, for one-line
  messages."""
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0][:300] if lines else ''}".rstrip()


def saved_tree(path: str) -> Mapping[str, Any]:
  """The tree of array metadata (`.shape`, `.dtype`) of the checkpoint item
  at `path` (`checkpoints/<step>/default`), read without its arrays."""
  with ocp.PyTreeCheckpointer() as checkpointer:
    metadata = checkpointer.metadata(path)
  tree = getattr(metadata, "item_metadata", metadata)  # Newer orbax wraps it.
  return getattr(tree, "tree", tree)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  return {
    "/".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape)
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }


def mismatched_params(saved: Any, expected: Any) -> list[str]:
  """Param paths whose shape differs, or that only one of the two trees has
  (`saved`: array metadata; `expected`: arrays or shape structs)."""
  saved, expected = _shapes(saved), _shapes(expected)
  return sorted(
    f"{path} {saved.get(path, 'absent')} vs {expected.get(path, 'absent')}"
    for path in saved.keys() | expected.keys()
    if saved.get(path) != expected.get(path)
  )


class Checkpointer:
  """Saves every `every_steps` steps and on demand; restores the newest
  readable checkpoint.

  Saves are asynchronous and atomic (orbax writes into a temporary folder
  and renames it when complete), so a crash or `kill -9` at any moment
  leaves the earlier checkpoints intact; the temporary folders of
  unfinished saves are removed on the next start. A failed write (disk
  full, read-only disk) stops the run with a `UserError` saying which
  checkpoint is the latest complete one.
  """

  def __init__(self, workdir: str, *, every_steps: int, max_to_keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.unreadable_directory = os.path.abspath(
      os.path.join(workdir, "unreadable_checkpoints")
    )
    self._every = every_steps
    self._options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True
    )
    with self._writing("create the checkpoint folder"):
      self._remove_unfinished_saves()
      self._manager = ocp.CheckpointManager(
        self.directory, options=self._options
      )

  def _remove_unfinished_saves(self) -> None:
    """Deletes the temporary folders of saves that never completed (a crash
    or kill -9 in the middle of a write); complete checkpoints stay. Done
    here rather than by orbax's `cleanup_tmp_directories`, whose background
    thread fails noisily when the process exits soon after."""
    if jax.process_index() != 0 or not os.path.isdir(self.directory):
      return
    for name in ocp.path.step.tmp_checkpoints(self.directory):
      shutil.rmtree(os.path.join(self.directory, name))

  @property
  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(
    self,
    abstract_state: Any,
    *,
    config_changes: Sequence[str] = (),
    warn: Callable[[str], None] = print,
  ) -> Any:
    """Restores the newest checkpoint that can be read, into the structure
    and shardings of `abstract_state` (a `TrainState` of shape structs).

    A checkpoint whose params differ from `abstract_state.params` (another
    model) stops the run with a `UserError` naming them and
    `config_changes` (what differs from the workdir's saved config). One
    that cannot be read (truncated or corrupt files) is moved to
    `unreadable_checkpoints/` with a warning through `warn`, and the next
    older one is tried; if none can be read, a `UserError` says why for
    each, and nothing is moved.
    """
    failures = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      path = os.path.join(self.directory, str(step), "default")
      try:
        saved_params = saved_tree(path)["params"]
      except Exception as e:  # Unreadable metadata: orbax raises many types.
        failures.append((step, _reason(e)))
        continue
      mismatched = mismatched_params(saved_params, abstract_state.params)
      if mismatched:
        raise UserError(
          self._incompatible_message(step, mismatched, config_changes)
        )
      try:
        state = self._manager.restore(
          step, args=ocp.args.StandardRestore(abstract_state)
        )
      except Exception as e:  # Truncated or corrupt arrays, many types.
        failures.append((step, _reason(e)))
        continue
      self._set_aside(failures, warn)
      return state
    raise UserError(self._unreadable_message(failures, config_changes))

  def _incompatible_message(
    self, step: int, mismatched: list[str], config_changes: Sequence[str]
  ) -> str:
    shown = "; ".join(mismatched[:5]) + (" ..." if len(mismatched) > 5 else "")
    changed = (
      f"The config differs from the one saved with them in: "
      f"{'; '.join(config_changes)}. "
      if config_changes
      else ""
    )
    return (
      f"The checkpoints in {self.directory} are of another model: at step "
      f"{step}, {len(mismatched)} params differ from this config's (saved "
      f"vs now: {shown}). {changed}To resume that run, rerun with its "
      "config (config.json next to the checkpoints); to train this config, "
      "use another --workdir."
    )

  def _unreadable_message(
    self, failures: list[tuple[int, str]], config_changes: Sequence[str]
  ) -> str:
    reasons = "; ".join(f"step {step}: {reason}" for step, reason in failures)
    changed = (
      " If the config changed since they were written (it differs in: "
      f"{'; '.join(config_changes)}), rerun with the saved values (the "
      "optimizer's settings change the state it restores) or use another "
      "--workdir."
      if config_changes
      else ""
    )
    return (
      f"None of the {len(failures)} checkpoints in {self.directory} could "
      f"be restored ({reasons}). The run stops rather than train from "
      "scratch over them: move or delete the folder to start over, or "
      f"restore it from a backup.{changed}"
    )

  def _set_aside(
    self, failures: list[tuple[int, str]], warn: Callable[[str], None]
  ) -> None:
    """Moves unreadable checkpoints out of the way, so that the steps they
    held are saved again as the run passes them."""
    if not failures:
      return
    os.makedirs(self.unreadable_directory, exist_ok=True)
    for step, reason in failures:
      target = os.path.join(self.unreadable_directory, str(step))
      if os.path.exists(target):
        target += f".{int(time.time())}"
      if jax.process_index() == 0:  # One process moves the shared files.
        shutil.move(os.path.join(self.directory, str(step)), target)
      warn(
        f"Warning: the checkpoint of step {step} could not be read "
        f"({reason}); moved it to {target}."
      )
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("unreadable checkpoints moved")
    self._manager.close()
    self._manager = ocp.CheckpointManager(self.directory, options=self._options)

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
    with self._writing(f"save step {step}"):
      self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
    return True

  def wait(self) -> None:
    """Waits for saves in flight to be written."""
    with self._writing("finish writing checkpoints"):
      self._manager.wait_until_finished()

  def close(self) -> None:
    with self._writing("finish writing checkpoints"):
      self._manager.close()

  @contextlib.contextmanager
  def _writing(self, what: str) -> Iterator[None]:
    """Turns a failed write (disk full, read-only, permissions; errors of
    asynchronous saves surface here too) into a `UserError`."""
    try:
      yield
    except Exception as e:  # OSError, or orbax/tensorstore wrapping one.
      complete = checkpoint_steps(os.path.dirname(self.directory))
      kept = (
        f"The latest complete checkpoint, step {complete[-1]}, is intact; "
        "rerunning the same command resumes from it"
        if complete
        else "No complete checkpoint was written yet"
      )
      raise UserError(
        f"Could not {what} in {self.directory} ({_reason(e)}). {kept}. "
        "Check that the disk has free space and that the folder is "
        "writable (a full, read-only or unmounted file system is the usual "
        "cause), then rerun."
      ) from None


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
  tree = saved_tree(path)
  with ocp.PyTreeCheckpointer() as checkpointer:
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
