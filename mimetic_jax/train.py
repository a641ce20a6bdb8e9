"""`train_and_evaluate(config, workdir)`: the whole training job.

Data-parallel over every device: a 1-D mesh with axis `steps.AXIS`, train
state replicated, small datasets resident in device memory and sharded over
the mesh, each device drawing its own batches from its shard inside the
jitted step; large ones (`dataset.in_memory=False`, e.g. ImageNet) stream
from tfds, decoded and cropped on the host, each process reading its own
shard. Evaluation scores the whole eval split exactly once (padded and
masked). Checkpoints are saved periodically, at the end and on SIGTERM /
Ctrl-C, and a rerun in the same workdir resumes from the latest one.
"""

import functools
import itertools
import json
import math
import operator
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from mimetic_jax import checkpointing
from mimetic_jax import diagnostics
from mimetic_jax import metric_logging
from mimetic_jax import signals
from mimetic_jax import steps
from mimetic_jax import tasks
from mimetic_jax.models import INITS, initialize


class ConfigError(ValueError):
  """A config that cannot run; the message says how to fix it."""


def _device_put_sharded(mesh, arrays: dict[str, np.ndarray]):
  """Process-local numpy arrays -> global arrays sharded on their axis 0."""
  sharding = jax.NamedSharding(mesh, jax.P(steps.AXIS))
  return {name: jax.make_array_from_process_local_data(sharding, x)
          for name, x in arrays.items()}


def _pad_eval(arrays: dict[str, np.ndarray], multiple: int):
  """Pads the eval arrays to a multiple of `multiple` with weight-0 rows."""
  n = len(arrays["weight"])
  pad = -n % multiple
  return {name: np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
          for name, x in arrays.items()}


def _in_memory_feed(mesh, task, data, state, key, *, config,
                    steps_per_epoch, first_step):
  """Places the data on device and compiles the steps for it.

  Returns `(train_inputs, train_fn, eval_sums)`: `train_fn(state,
  train_inputs(), key)` is one step (the batch is drawn on device from the
  resident training split), `eval_sums(params)` the summed eval scores.
  """
  del first_step  # The step number alone says where the data stands.
  num_local_devices = jax.local_device_count()
  local_batch = config.batch_size // jax.device_count()
  local_eval_batch = config.eval_batch_size // jax.device_count()
  per_device = data.num_train // num_local_devices
  train_data = _device_put_sharded(
      mesh, {k: v[:per_device * num_local_devices]
             for k, v in data.train.items()})
  eval_data = _device_put_sharded(
      mesh, _pad_eval(data.eval, num_local_devices * local_eval_batch))
  train_fn = steps.compile_train_step(
      mesh, task=task, steps_per_epoch=steps_per_epoch,
      local_batch_size=local_batch).lower(state, train_data, key).compile()
  eval_fn = steps.compile_eval(
      mesh, apply_fn=state.apply_fn, task=task,
      local_batch_size=local_eval_batch).lower(state.params,
                                               eval_data).compile()
  return lambda: train_data, train_fn, lambda p: eval_fn(p, eval_data)


def _streamed_feed(mesh, task, data, state, key, *, config, steps_per_epoch,
                   first_step):
  """Host-side batches from `data.stream`; same interface as
  `_in_memory_feed`, but `train_inputs()` is the next global batch.

  A resumed run reshuffles the stream with a seed derived from (seed, step)
  rather than replaying it to the exact position (which for ImageNet would
  mean reading every earlier example again).
  """
  del steps_per_epoch
  process_count = jax.process_count()
  seed = int(np.random.SeedSequence([config.seed, first_step])
             .generate_state(1)[0])
  batches = data.stream.train_batches(config.batch_size // process_count,
                                      seed)
  global_batches = map(functools.partial(_device_put_sharded, mesh), batches)
  first_batch = next(global_batches)  # Compiled for, then trained on first.
  train_fn = steps.compile_train_step(
      mesh, task=task, steps_per_epoch=None,
      local_batch_size=config.batch_size // jax.device_count()).lower(
          state, first_batch, key).compile()
  eval_fn = steps.compile_eval(
      mesh, apply_fn=state.apply_fn, task=task,
      local_batch_size=config.eval_batch_size // jax.device_count())

  def eval_sums(params):
    total = None
    for batch in data.stream.eval_batches(config.eval_batch_size //
                                          process_count):
      sums = eval_fn(params, _device_put_sharded(mesh, batch))
      total = sums if total is None else jax.tree.map(operator.add, total,
                                                      sums)
    return total

  train_iterator = itertools.chain([first_batch], global_batches)
  return functools.partial(next, train_iterator), train_fn, eval_sums


def _check_train_size(num_local: int, local_batch: int, process_count: int):
  if num_local < local_batch:
    raise ConfigError(
        f"Each device holds {num_local} training examples but needs "
        f"{local_batch} per step: the global batch size is larger than the "
        f"training set{' shard' if process_count > 1 else ''}. Lower "
        "--config.batch_size or use more data (dataset.max_train_examples).")


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, float]:
  """Trains and evaluates; returns the final eval metrics."""
  validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  log = metric_logging.log if is_main else (lambda message: None)
  if is_main:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  task = tasks.get_task(config)
  num_devices, num_local_devices = jax.device_count(), jax.local_device_count()
  mesh = jax.make_mesh((num_devices,), (steps.AXIS,))
  local_batch = config.batch_size // num_devices

  start = time.perf_counter()
  data = task.load_data(process_index=jax.process_index(),
                        process_count=jax.process_count(), workdir=workdir)
  streamed = data.stream is not None
  # Every device gets the same number of training examples.
  per_device = data.num_train // (num_devices if streamed
                                  else num_local_devices)
  _check_train_size(per_device, local_batch, jax.process_count())
  steps_per_epoch = per_device // local_batch
  total_steps, warmup_steps = step_budget(config, steps_per_epoch)
  if warmup_steps >= total_steps:
    log(f"Warning: the warm-up ({config.warmup_epochs} epochs = "
        f"{warmup_steps} steps) is not shorter than the run ({total_steps} "
        "steps), so the learning rate never reaches learning_rate="
        f"{config.learning_rate}. For a short run set e.g. --config."
        f"warmup_epochs={0.1 * total_steps / steps_per_epoch:.3g}.")
  eval_every = max(1, round(config.eval_every_epochs * steps_per_epoch))
  num_eval = (data.info["num_eval"] if streamed else
              int(data.eval["weight"].sum()) * jax.process_count())
  log(f"Data: {per_device * num_devices} training examples used "
      f"({steps_per_epoch} steps of {config.batch_size} per epoch), "
      f"{num_eval} eval items{' (streamed)' if streamed else ''}; "
      f"loaded in {time.perf_counter() - start:.1f}s. {total_steps} steps on "
      f"{num_devices} x {jax.devices()[0].device_kind}.")

  model = task.make_model(data)
  tx, schedule = make_optimizer(config, total_steps, warmup_steps)
  key = jax.random.key(config.seed)
  init_key = jax.random.fold_in(key, 0)

  def init_state():
    params = initialize(
        model, init_key, task.dummy_inputs(data), init=config.init,
        qk=parse_strength(config.mimetic.qk, "mimetic.qk"),
        vo=parse_strength(config.mimetic.vo, "mimetic.vo"),
        distribution=config.mimetic.distribution)
    return steps.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

  replicated = jax.NamedSharding(mesh, jax.P())
  abstract_state = jax.eval_shape(init_state)
  state_sharding = jax.tree.map(lambda _: replicated, abstract_state)
  ckpt = checkpointing.Checkpointer(workdir,
                                    every_steps=config.checkpoint_every_steps,
                                    max_to_keep=config.max_to_keep)
  if ckpt.latest_step is not None:
    state = ckpt.restore(jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
        abstract_state, state_sharding))
    log(f"Resumed from {ckpt.directory} at step {int(state.step)}.")
  else:
    state = jax.jit(init_state, out_shardings=state_sharding)()
    num_params = sum(x.size for x in jax.tree.leaves(state.params))
    log(f"Initialized {type(model).__name__} ({num_params:,} params) with "
        f"init={config.init!r}.")

  first_step = step = int(state.step)
  start = time.perf_counter()
  make_feed = _streamed_feed if streamed else _in_memory_feed
  train_inputs, train_fn, eval_sums = make_feed(
      mesh, task, data, state, key, config=config,
      steps_per_epoch=steps_per_epoch, first_step=first_step)
  compile_seconds = time.perf_counter() - start
  log(f"Compiled train and eval steps in {compile_seconds:.1f}s.")

  writer = metric_logging.MetricWriter(workdir, enabled=is_main)
  writer.write(step, {"compile_seconds": compile_seconds})
  items_per_step = config.batch_size * task.items_per_example(data)
  meter = metric_logging.Throughput(step, total_steps, items_per_step,
                                    num_devices)

  def evaluate(step: int) -> dict[str, float]:
    jax.block_until_ready(state)  # Queued train steps are not eval time.
    tic = time.perf_counter()
    sums = jax.device_get(eval_sums(state.params))
    metrics = tasks.summarize_eval({k: float(v) for k, v in sums.items()},
                                   data)
    if config.attention_stats:
      metrics.update(diagnostics.attention_summary(state.params))
    metrics["epoch"] = step / steps_per_epoch
    metrics["eval_seconds"] = time.perf_counter() - tic
    writer.write(step, metrics)
    log(f"eval at step {step} (epoch {step / steps_per_epoch:.2f}): "
        + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                    if k.startswith("eval_") and k != "eval_seconds"))
    return metrics

  eval_metrics = {}
  with signals.StopSignal() as stop:
    while step < total_steps:
      state, train_metrics = train_fn(state, train_inputs(), key)
      step += 1
      if step % config.log_every_steps == 0 or step == total_steps:
        metrics = jax.device_get(train_metrics)
        if not all(math.isfinite(float(v)) for v in metrics.values()):
          ckpt.wait()
          raise FloatingPointError(
              f"Non-finite training metrics at step {step}: {metrics}. The "
              "last good checkpoint is kept in "
              f"{ckpt.directory}; lower the learning rate, enable "
              "grad_clip_norm, or check the data.")
        metrics = {k: float(v) for k, v in metrics.items()}
        metrics["learning_rate"] = float(schedule(step - 1))
        metrics.update(meter.update(step))
        if "tokens_per_byte" in data.info:
          metrics["train_perplexity"] = math.exp(min(metrics["train_loss"],
                                                     700.0))
          metrics["train_bits_per_byte"] = (
              metrics["train_loss"] / math.log(2) * data.info["tokens_per_byte"])
        writer.write(step, metrics)
        log(metric_logging.progress_line(
            step, total_steps, step / steps_per_epoch, metrics, task.unit,
            meter.eta(step)))
      if step % eval_every == 0 and step < total_steps:
        with meter.excluded(state):
          eval_metrics = evaluate(step)
      if ckpt.due(step):
        with meter.excluded(state):
          ckpt.maybe_save(step, state)
      if stop.received:
        ckpt.maybe_save(step, state, force=True)
        ckpt.wait()
        log(f"Received {stop.received}: saved step {step} to "
            f"{ckpt.directory}; rerun the same command to resume.")
        writer.close()
        return eval_metrics
    if step > first_step or not eval_metrics:
      eval_metrics = evaluate(step)
      writer.write(step, meter.steady())
    ckpt.maybe_save(step, state, force=True)
    ckpt.wait()
  ckpt.close()
  writer.close()
  if is_main:
    with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
      json.dump({"step": step, **eval_metrics}, f, indent=2)
  return eval_metrics


def default_workdir(config_path: str, config: ml_collections.ConfigDict) -> str:
  """`workdirs/<config>[_<preset>]_<init>_seed<seed>`, e.g.
  `workdirs/cifar10_smoke_mimetic_seed0`."""
  path, _, preset = config_path.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  parts = [name] + ([preset] if preset else []) + [config.init,
                                                    f"seed{config.seed}"]
  return os.path.join("workdirs", "_".join(parts))
