"""`train_and_evaluate(config, workdir)`: the whole training job.

Data-parallel over every device: a 1-D mesh with axis `steps.AXIS` and the
train state replicated. The data flows one way: `config.validate` ->
`data.load` (a `DatasetInfo` and arrays or a stream) -> `models.factory`
(model from config and info) -> `models.init` (default / mimetic /
trunc_normal) -> `feeds` (in memory or streamed) and the compiled
`steps` -> `evaluate.Evaluator` -> `checkpointing` and `metric_logging`.
Checkpoints are saved periodically, at the end and on SIGTERM / Ctrl-C, and a
rerun in the same workdir resumes from the latest one.
"""

from collections.abc import Callable
import json
import os
import time

import flax.linen as nn
import jax
from jax.experimental import multihost_utils
import ml_collections
import optax

from mimetic_jax import (
  checkpointing,
  diagnostics,
  divergence,
  evaluate,
  feeds,
  metric_logging,
  optim,
  signals,
  steps,
  tasks,
)
from mimetic_jax import config as config_lib
from mimetic_jax import data as data_lib
from mimetic_jax import workdir as workdir_lib
from mimetic_jax.models import factory
from mimetic_jax.models import init as init_lib

FINAL_METRICS = "final_metrics.json"


def _warn_if_warmup_covers_run(
  config, total_steps, warmup_steps, steps_per_epoch, log
) -> None:
  if warmup_steps >= total_steps:
    log(
      f"Warning: the warm-up ({config.warmup_epochs} epochs = "
      f"{warmup_steps} steps) is not shorter than the run ({total_steps} "
      "steps), so the learning rate never reaches learning_rate="
      f"{config.learning_rate}. For a short run set e.g. --config."
      f"warmup_epochs={0.1 * total_steps / steps_per_epoch:.3g}."
    )


def _finished_metrics(workdir: str, step: int) -> dict[str, float] | None:
  """The final metrics a finished run wrote at `step`, if it did."""
  path = os.path.join(workdir, FINAL_METRICS)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    metrics = json.load(f)
  return metrics if metrics.get("step") == step else None


def _load_data_in_turn(
  config: ml_collections.ConfigDict, workdir: str
) -> data_lib.Dataset:
  """This process's share of the data. With several processes, process 0
  loads first (preparing the dataset or tokenizer on first use) and the
  others wait for it, so that no two write the same files."""
  first = jax.process_index() == 0
  if jax.process_count() > 1 and not first:
    multihost_utils.sync_global_devices("process 0 has prepared the data")
  dataset = data_lib.load(
    config,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    workdir=workdir,
  )
  if jax.process_count() > 1 and first:
    multihost_utils.sync_global_devices("process 0 has prepared the data")
  return dataset


def state_initializer(
  config: ml_collections.ConfigDict,
  model: nn.Module,
  info: data_lib.DatasetInfo,
  tx: optax.GradientTransformation,
) -> Callable[[], steps.TrainState]:
  """`() -> TrainState` of a fresh run: params from `models.init` (the
  config's `init`, keyed by its seed) and `tx`'s initial state; to be
  jitted, or `eval_shape`d for the structure a checkpoint restores into."""
  inputs = factory.dummy_inputs(config, info)

  def init_state() -> steps.TrainState:
    params = init_lib.init_params(config, model, inputs)
    return steps.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

  return init_state


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str
) -> dict[str, float]:
  """Trains and evaluates; returns the final eval metrics."""
  config_lib.validate(config)
  is_main = jax.process_index() == 0
  log = metric_logging.log if is_main else (lambda message: None)
  saved_config = workdir_lib.saved_config(workdir)
  config_changes = (
    workdir_lib.config_changes(saved_config, config) if saved_config else []
  )
  if is_main:
    workdir_lib.save_config(workdir, config)  # Also checks it is writable.
  num_devices = jax.device_count()
  mesh = jax.make_mesh((num_devices,), (steps.AXIS,))
  task = tasks.get_task(config)

  start = time.perf_counter()
  dataset = _load_data_in_turn(config, workdir)
  load_seconds = time.perf_counter() - start
  info = dataset.info
  model = factory.make_model(config, info)

  ckpt = checkpointing.Checkpointer(
    workdir,
    every_steps=config.checkpoint_every_steps,
    max_to_keep=config.max_to_keep,
  )
  first_step = ckpt.latest_step or 0
  feed = feeds.make_feed(mesh, dataset, config, first_step=first_step)
  steps_per_epoch = feed.steps_per_epoch
  total_steps, warmup_steps = optim.step_budget(config, steps_per_epoch)
  _warn_if_warmup_covers_run(
    config, total_steps, warmup_steps, steps_per_epoch, log
  )
  eval_every = max(1, round(config.eval_every_epochs * steps_per_epoch))
  log(
    f"Data: {steps_per_epoch * config.batch_size} training examples used "
    f"({steps_per_epoch} steps of {config.batch_size} per epoch), "
    f"{info.num_eval} eval items{' (streamed)' if dataset.stream else ''}; "
    f"loaded in {load_seconds:.1f}s. {total_steps} steps on "
    f"{num_devices} x {jax.devices()[0].device_kind}."
  )

  tx, schedule = optim.make_optimizer(config, total_steps, warmup_steps)
  init_state = state_initializer(config, model, info, tx)
  replicated = jax.NamedSharding(mesh, jax.P())
  if ckpt.latest_step is not None:
    if config_changes:
      log(f"Resuming with config changes: {'; '.join(config_changes)}.")
    state = ckpt.restore(
      jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
        jax.eval_shape(init_state),
      ),
      config_changes=config_changes,
      warn=log,
    )
    log(f"Resumed from {ckpt.directory} at step {int(state.step)}.")
  else:
    state = jax.jit(init_state, out_shardings=replicated)()
    num_params = sum(x.size for x in jax.tree.leaves(state.params))
    log(
      f"Initialized {type(model).__name__} ({num_params:,} params) with "
      f"init={config.init!r}."
    )

  step = int(state.step)
  finished = _finished_metrics(workdir, step)
  if step >= total_steps and finished is not None:
    log(
      f"Already finished: {workdir} holds the final checkpoint (step {step}"
      f" of {total_steps}) and final_metrics.json; nothing to train. To "
      "train longer, raise --config.total_steps (or num_epochs); to start "
      "over, use another --workdir."
    )
    ckpt.close()
    return finished
  key = jax.random.key(config.seed)
  start = time.perf_counter()
  train_step = feed.compile_train_step(task, state, key)
  compile_seconds = time.perf_counter() - start
  log(f"Compiled the train step in {compile_seconds:.1f}s.")
  evaluator = evaluate.Evaluator(
    mesh,
    task=task,
    apply_fn=model.apply,
    feed=feed,
    info=info,
    local_batch_size=config.eval_batch_size // num_devices,
  )

  writer = metric_logging.MetricWriter(workdir, enabled=is_main)
  writer.write(
    step,
    {
      "compile_seconds": compile_seconds,
      "total_steps": total_steps,
      "steps_per_epoch": steps_per_epoch,
    },
  )
  items_per_step = config.batch_size * tasks.items_per_example(config)
  meter = metric_logging.Throughput(
    step, total_steps, items_per_step, num_devices
  )

  def run_eval(step: int) -> dict[str, float]:
    jax.block_until_ready(state)  # Queued train steps are not eval time.
    tic = time.perf_counter()
    metrics = evaluator(state.params)
    if config.attention_stats:
      metrics.update(diagnostics.attention_summary(state.params))
    metrics["epoch"] = step / steps_per_epoch
    metrics["eval_seconds"] = time.perf_counter() - tic
    writer.write(step, metrics)
    log(
      f"eval at step {step} (epoch {step / steps_per_epoch:.2f}): "
      + ", ".join(
        f"{k} {v:.4f}"
        for k, v in metrics.items()
        if k.startswith("eval_") and k != "eval_seconds"
      )
    )
    return metrics

  first_step, eval_metrics = step, {}
  diverged = divergence.DivergenceCheck(ckpt)
  with signals.StopSignal() as stop:
    while step < total_steps:
      state, step_metrics = train_step(state, key)
      step += 1
      diverged.record(step, step_metrics)
      if step % config.log_every_steps == 0 or step == total_steps:
        diverged.check()
        metrics = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
        metrics["learning_rate"] = float(schedule(step - 1))
        metrics.update(meter.update(step))
        metrics = evaluate.train_metrics(metrics, info)
        writer.write(step, metrics)
        log(
          metric_logging.progress_line(
            step,
            total_steps,
            step / steps_per_epoch,
            metrics,
            task.unit,
            meter.eta(step),
          )
        )
      if step % eval_every == 0 and step < total_steps:
        diverged.check()
        with meter.excluded(state):
          eval_metrics = run_eval(step)
      if ckpt.due(step):
        diverged.check()
        with meter.excluded(state):
          ckpt.maybe_save(step, state)
      if stop.received:
        diverged.check()
        ckpt.maybe_save(step, state, force=True)
        ckpt.wait()
        log(
          f"Received {stop.received}: saved step {step} to "
          f"{ckpt.directory}; rerun the same command to resume."
        )
        writer.close()
        return eval_metrics
    diverged.check()
    if step > first_step or not eval_metrics:
      eval_metrics = run_eval(step)
      writer.write(step, meter.steady())
    ckpt.maybe_save(step, state, force=True)
    ckpt.wait()
  ckpt.close()
  writer.close()
  if is_main:
    with open(os.path.join(workdir, FINAL_METRICS), "w") as f:
      json.dump({"step": step, **eval_metrics}, f, indent=2)
  return eval_metrics
