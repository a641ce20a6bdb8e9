"""The same-batch cross-check (`python -m benchmarks.crosscheck`).

* Training equivalence: from the same (ported) params, the project's
  compiled step and the torch loop of `timm_side` give the same losses,
  per-group gradient norms and final eval on the same batches (AdamW with
  weight decay, warm-up, clipping, label smoothing all on), so the two
  frameworks' rows of the cross-check differ only by their init.
* `timm_side.mimetic_` (written from the paper's formulas) has the
  statistics of the project's `mimetic_params`, and is exact where the
  paper's construction is (W_v W_proj = its target).
* The command end to end on a tiny config, with resume and a bad input.

Needs the `reference` extra (torch, timm).
"""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import cifar10
from mimetic_jax import tasks
from mimetic_jax.data import Dataset, DatasetInfo
from mimetic_jax.models import ViT, factory

sys.modules.setdefault("triton", None)  # See tests/test_reference.py.
torch = pytest.importorskip(
  "torch", reason="needs PyTorch: pip install -e '.[reference]'"
)
pytest.importorskip("timm", reason="needs timm: pip install -e '.[reference]'")
# pylint: disable=g-import-not-at-top
from benchmarks.crosscheck import project_side, report, timm_side  # noqa: E402 (after the triton stub / importorskip)
from mimetic_jax import optim, timm_port  # noqa: E402 (after the triton stub / importorskip)

SIZE, STEPS, BATCH = 16, 4, 16


def _tiny_config():
  config = cifar10.get_config("smoke")
  config.model.update(
    width=48,
    depth=2,
    mlp_dim=96,
    num_heads=3,
    patch_size=4,
    gelu_approximate=False,
  )
  config.batch_size = BATCH
  config.update(
    total_steps=STEPS,
    warmup_epochs=0.5,
    learning_rate=3e-3,
    weight_decay=0.05,
    grad_clip_norm=0.5,
    label_smoothing=0.1,
    adam_eps=1e-6,
    log_every_steps=2,
  )
  return config


def _random_data(num_train=2 * BATCH, num_eval=24):
  rng = np.random.default_rng(0)
  image = lambda n: rng.integers(0, 256, (n, SIZE, SIZE, 3), np.uint8)
  return Dataset(
    info=DatasetInfo(num_train=num_train, num_eval=num_eval, num_classes=10),
    train={
      "image": image(num_train),
      "label": rng.integers(0, 10, num_train).astype(np.int32),
    },
    eval={
      "image": image(num_eval),
      "label": rng.integers(0, 10, num_eval).astype(np.int32),
      "weight": np.ones(num_eval, np.float32),
    },
  )


@pytest.mark.slow
@pytest.mark.parametrize("init", ["default", "mimetic"])
def test_timm_training_matches_the_project_step(init):
  config = _tiny_config()
  task, data = tasks.ImageClassification(config), _random_data()
  batches, labels = project_side.make_batches(
    task, data, seed=0, total_steps=STEPS, batch_size=BATCH
  )
  model = factory.make_model(config, data.info)
  params = project_side.init_params(
    model, init=init, seed=0, config=config, sample=batches[0]
  )
  # The zero head would hide the other gradients at step 0.
  params["head"]["kernel"] = 0.1 * jax.random.normal(
    jax.random.key(1), params["head"]["kernel"].shape
  )
  steps_per_epoch = len(data.train["label"]) // BATCH
  final, ours = project_side.train(
    task,
    model,
    params,
    seed=0,
    batches=batches,
    labels=labels,
    config=config,
    steps_per_epoch=steps_per_epoch,
    grad_norm_steps=STEPS,
    log=lambda line: None,
  )

  vit = timm_port.timm_vit(model, image_size=SIZE)
  timm_port.load_params(vit, jax.tree.map(np.asarray, params))
  _, schedule = optim.make_optimizer(
    config, *optim.step_budget(config, steps_per_epoch)
  )
  theirs = timm_side.train(
    vit,
    batches,
    labels,
    config=config,
    grad_norm_steps=STEPS,
    learning_rates=[float(schedule(i)) for i in range(STEPS)],
    log=lambda line: None,
  )

  np.testing.assert_allclose(
    theirs["train_loss"], ours["train_loss"], rtol=1e-4
  )
  assert ours["train_loss"][0] != ours["train_loss"][-1]  # It trained.
  for a, b in zip(ours["grad_norms"], theirs["grad_norms"]):
    assert set(a) == set(b)
    for group in a:
      np.testing.assert_allclose(
        b[group], a[group], rtol=2e-3, atol=1e-6, err_msg=group
      )
  images, targets = project_side.eval_inputs(task, data)
  np.testing.assert_allclose(
    timm_side.evaluate(
      vit, images, targets, batch_size=10, label_smoothing=0.1
    )["eval_loss"],
    project_side.evaluate(task, model, final, images, targets, batch_size=10)[
      "eval_loss"
    ],
    rtol=1e-4,
  )


def test_torch_mimetic_init_is_the_papers_construction():
  """Replaying the generator's draws: per head W_q W_k^T is the best rank-k
  approximation of 0.7 Z + 0.7 I (numpy SVD), W_v W_proj is exactly
  0.4 Z - 0.4 I; at ViT-Tiny's width the QK diagonal is near 0.40 (as the
  project's init gives) and the VO diagonal near -0.4."""
  d, heads, k = 192, 3, 64
  model = ViT(
    num_classes=10,
    patch_size=4,
    width=d,
    depth=2,
    mlp_dim=4 * d,
    num_heads=heads,
  )
  vit = timm_port.timm_vit(model, image_size=SIZE)
  timm_side.mimetic_(
    vit, torch.Generator().manual_seed(0), qk=(0.7, 0.7), vo=(0.4, -0.4)
  )
  replay = torch.Generator().manual_seed(0)
  draw = lambda: torch.randn(d, d, generator=replay).double().numpy() / d**0.5
  qk_diagonals = []
  for block in vit.blocks:
    w = block.attn.qkv.weight.detach().double().numpy()
    for h in range(heads):
      u, s, vt = np.linalg.svd(0.7 * draw() + 0.7 * np.eye(d))
      w_q, w_k = w[h * k : (h + 1) * k].T, w[d + h * k : d + (h + 1) * k].T
      np.testing.assert_allclose(
        w_q @ w_k.T, (u[:, :k] * s[:k]) @ vt[:k], atol=1e-5
      )
      qk_diagonals.append(np.diag(w_q @ w_k.T).mean())
    w_proj = block.attn.proj.weight.detach().double().numpy().T
    vo = w[2 * d :].T @ w_proj
    np.testing.assert_allclose(vo, 0.4 * draw() - 0.4 * np.eye(d), atol=1e-5)
    assert abs(np.diag(vo).mean() + 0.4) < 0.05
    assert np.all(block.attn.qkv.bias.detach().numpy() == 0)
  assert abs(np.mean(qk_diagonals) - 0.40) < 0.03


@pytest.mark.slow
def test_group_names_agree_between_frameworks():
  model = ViT(
    num_classes=10, patch_size=4, width=48, depth=2, mlp_dim=96, num_heads=3
  )
  params = model.init(jax.random.key(0), np.zeros((1, SIZE, SIZE, 3)))
  flax_groups = {
    project_side.grad_group(tuple(p.key for p in path))
    for path, _ in jax.tree_util.tree_leaves_with_path(params["params"])
  }
  vit = timm_port.timm_vit(model, image_size=SIZE)
  timm_groups = {
    timm_side.grad_group(n)
    for n, p in vit.named_parameters()
    if p.requires_grad
  }
  timm_groups = {g.replace("qkv", "qk") for g in timm_groups} | {
    f"vo/{i}" for i in range(2)
  }
  assert flax_groups == timm_groups
  assert {g.split("/")[0] for g in flax_groups} >= set(report.GROUPS) - {
    "total"
  }


def _crosscheck(workdir, *flags):
  return subprocess.run(
    [
      sys.executable,
      "-m",
      "benchmarks.crosscheck",
      "--config",
      "configs/cifar10.py:smoke",
      f"--workdir={workdir}",
      *flags,
    ],
    capture_output=True,
    text=True,
    check=False,
    timeout=900,
  )


@pytest.mark.e2e
def test_command_end_to_end_resumes_and_refuses_another_config(
  tmp_path, image_folder
):
  workdir = tmp_path / "xc"
  common = [
    f"--config.dataset.path={image_folder}",
    f"--config.dataset.data_dir={tmp_path / 'tfds'}",
    "--config.dataset.image_size=16",
    "--config.batch_size=32",
    "--config.total_steps=3",
    "--config.model.depth=1",
    "--grad_norm_steps=2",
    "--seeds=0",
  ]
  result = _crosscheck(workdir, "--runs=project_mimetic,timm_mimetic", *common)
  assert result.returncode == 0, result.stderr[-3000:]
  records = {
    p.name: json.loads(p.read_text()) for p in workdir.glob("*_seed0.json")
  }
  assert set(records) == {
    "project_mimetic_seed0.json",
    "timm_mimetic_seed0.json",
  }
  for record in records.values():
    assert len(record["train_loss"]) == 3 and len(record["grad_norms"]) == 2
    assert 0 <= record["eval_accuracy"] <= 1
  text = (workdir / "results.md").read_text()
  assert "| project_mimetic |" in text and "| timm_mimetic |" in text
  for plot in (
    "training_loss.png",
    "grad_norms.png",
    "grad_norms_qk_layers.png",
  ):
    assert (workdir / plot).stat().st_size > 0

  again = _crosscheck(
    workdir, "--runs=project_mimetic,timm_mimetic", *common
  )  # Finished runs are skipped.
  assert again.returncode == 0 and "step 3/3" not in again.stdout
  changed = _crosscheck(workdir, *common, "--config.learning_rate=0.1")
  assert changed.returncode != 0
  assert "learning_rate" in changed.stderr
  assert "Traceback" not in changed.stderr
