"""Data-parallel steps: shard_map and pmap give the single-device update;
device-resident sampling and padded evaluation are exact."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import cifar10
from mimetic_jax import steps, tasks
from mimetic_jax.data import DatasetInfo
from mimetic_jax.models import factory, initialize

P = jax.P


@pytest.fixture(scope="module")
def task():
  config = cifar10.get_config("smoke")
  config.augment.update(
    crop_padding=0, flip=False, randaugment_num_ops=0, cutout_size=0
  )
  return tasks.ImageClassification(config)


@pytest.fixture(scope="module")
def model_and_batch(task):
  model = factory.make_model(task.config, DatasetInfo(num_classes=10))
  rng = np.random.default_rng(0)
  batch = {
    "image": rng.integers(0, 256, (16, 32, 32, 3), np.uint8),
    "label": rng.integers(0, 10, (16,), np.int32),
  }
  params = initialize(
    model, jax.random.key(0), jnp.zeros((1, 32, 32, 3)), init="mimetic"
  )
  # The head starts at zero; perturb it so every parameter gets a gradient.
  params["head"]["kernel"] = 0.1 * jax.random.normal(
    jax.random.key(1), params["head"]["kernel"].shape
  )
  # Plain SGD: the update is proportional to the gradient, so a gradient
  # scaled by the device count would show (Adam's first step would hide it).
  state = steps.TrainState.create(
    apply_fn=model.apply, params=params, tx=optax.sgd(0.1)
  )
  return state, batch


def run_shard_map(state, batch, task, num_devices):
  mesh = jax.make_mesh(
    (num_devices,), (steps.AXIS,), devices=jax.devices()[:num_devices]
  )
  fn = steps.shard_map_over(
    mesh,
    functools.partial(steps.train_step, task=task),
    in_specs=(P(), P(steps.AXIS), P()),
    out_specs=(P(), P()),
  )
  batch = jax.device_put(batch, jax.NamedSharding(mesh, P(steps.AXIS)))
  return fn(state, batch, jax.random.key(3))


def replicate(tree, n):
  """Stacks `n` copies along a new leading axis (pmap's input layout)."""
  return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), tree)


@pytest.mark.parametrize(
  "value_range, expected",
  [
    (None, [-2.0, -1.2, 2.0]),  # The default: (x - 0.5) / 0.25.
    ((0.0, 1.0), [0.0, 0.2, 1.0]),
    ((-1.0, 1.0), [-1.0, -0.6, 1.0]),
  ],
)
def test_image_inputs_are_mapped_to_the_value_range(value_range, expected):
  config = cifar10.get_config("smoke")
  if value_range is not None:
    config.dataset.value_range = value_range
  batch = {"image": np.array([0, 51, 255], np.uint8).reshape(1, 1, 1, 3)}
  key = jax.random.key(0)
  evaluated = tasks.ImageClassification(config).inputs(batch, key, train=False)
  np.testing.assert_allclose(evaluated.ravel(), expected, atol=1e-6)
  config.augment.update(
    crop_padding=0, flip=False, randaugment_num_ops=0, cutout_size=0
  )  # Augmentation off: same as eval.
  trained = tasks.ImageClassification(config).inputs(batch, key, train=True)
  np.testing.assert_allclose(trained.ravel(), expected, atol=1e-6)


def test_eight_devices_are_visible():
  assert jax.device_count() == 8, "conftest should force 8 CPU devices"


@pytest.mark.slow
def test_shard_map_and_pmap_match_single_device_update(task, model_and_batch):
  state, batch = model_and_batch
  single, single_metrics = run_shard_map(state, batch, task, 1)
  sharded, sharded_metrics = run_shard_map(state, batch, task, 8)
  pmapped, pmapped_metrics = jax.pmap(
    functools.partial(steps.train_step, task=task), axis_name=steps.AXIS
  )(
    replicate(state, 8),
    jax.tree.map(lambda x: x.reshape((8, 2) + x.shape[1:]), batch),
    replicate(jax.random.key(3), 8),
  )
  pmapped = jax.tree.map(lambda x: x[0], pmapped)
  delta = jax.tree.map(jnp.subtract, single.params, state.params)
  assert float(optax.tree.norm(delta)) > 1e-3  # The step did something.
  for other in (sharded, pmapped):
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6),
      single.params,
      other.params,
    )
  np.testing.assert_allclose(
    sharded_metrics["train_loss"], single_metrics["train_loss"], rtol=1e-5
  )
  np.testing.assert_allclose(
    pmapped_metrics["grad_norm"][0], single_metrics["grad_norm"], rtol=1e-4
  )


def test_sampling_visits_each_example_once_per_epoch():
  num_devices, per_device, local_batch = 8, 12, 3
  steps_per_epoch = per_device // local_batch
  mesh = jax.make_mesh((num_devices,), (steps.AXIS,))
  sample = steps.shard_map_over(
    mesh,
    functools.partial(
      steps.sample_batch,
      steps_per_epoch=steps_per_epoch,
      local_batch_size=local_batch,
    ),
    in_specs=(P(steps.AXIS), P(), P()),
    out_specs=P(steps.AXIS),
  )
  data = jax.device_put(
    {"id": jnp.arange(num_devices * per_device)},
    jax.NamedSharding(mesh, P(steps.AXIS)),
  )
  key = jax.random.key(0)
  epochs = [
    np.concatenate(
      [
        np.asarray(sample(data, jnp.int32(s), key)["id"])
        for s in range(e * steps_per_epoch, (e + 1) * steps_per_epoch)
      ]
    )
    for e in range(2)
  ]
  for ids in epochs:
    assert sorted(ids) == list(range(num_devices * per_device))
  assert not np.array_equal(epochs[0], epochs[1])  # Reshuffled.


@pytest.mark.slow
def test_padded_eval_scores_every_example_exactly_once(task, model_and_batch):
  state, _ = model_and_batch
  rng = np.random.default_rng(1)
  n, local_batch = 37, 2  # 37 real examples, padded to 48 = 8 devices x 3 x 2.
  eval_np = {
    "image": rng.integers(0, 256, (48, 32, 32, 3), np.uint8),
    "label": rng.integers(0, 10, (48,), np.int32),
    "weight": (np.arange(48) < n).astype(np.float32),
  }
  mesh = jax.make_mesh((8,), (steps.AXIS,))
  sums = steps.compile_eval(
    mesh, apply_fn=state.apply_fn, task=task, local_batch_size=local_batch
  )(
    state.params,
    jax.device_put(eval_np, jax.NamedSharding(mesh, P(steps.AXIS))),
  )
  logits, _ = state.apply_fn(
    {"params": state.params},
    task.inputs({"image": eval_np["image"][:n]}, None, train=False),
  )
  losses = optax.softmax_cross_entropy_with_integer_labels(
    logits, eval_np["label"][:n]
  )
  assert float(sums["weight"]) == n
  np.testing.assert_allclose(sums["loss"], losses.sum(), rtol=1e-4)
  np.testing.assert_allclose(
    sums["correct"], (logits.argmax(-1) == eval_np["label"][:n]).sum()
  )
