r"""Where the training step's time goes, per XLA op.

    python -m benchmarks.profile_step --config configs/cifar10.py:cpu \
        [--config.KEY=VALUE ...] [--steps 3] [--top 25]

Compiles the trainer's step exactly as `benchmarks.train_step` does, runs
`--steps` steps under `jax.profiler.trace`, and prints the time per step of
the XLA ops it ran, summed (1) by the model code each op comes from (its
`op_name` metadata, with block indices merged: `block_*`) and (2) by kernel
kind (`ynn_fusion`: matmuls through XLA:CPU's YNNPACK library; `dot`: other
matmuls; `*_fusion`: fused elementwise ops and layout copies). The trace
stays in `--trace_dir` for TensorBoard or Perfetto.
"""

import collections
import glob
import gzip
import json
import re
import tempfile

from absl import app, flags
import jax
from ml_collections import config_flags

from benchmarks import workloads
from mimetic_jax import cli

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Image config, e.g. configs/cifar10.py:cpu."
)
_STEPS = flags.DEFINE_integer("steps", 3, "Steps traced.")
_TOP = flags.DEFINE_integer("top", 25, "Rows of the per-source table.")
_TRACE_DIR = flags.DEFINE_string(
  "trace_dir", None, "Where the trace goes (default: a temporary folder)."
)
flags.mark_flags_as_required(["config"])

# An HLO instruction line: `%name = shape kind(...), ... op_name="..."`.
_INSTRUCTION = re.compile(
  r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ([\w\-]+)\(.*?op_name=\"([^\"]*)\""
)


def op_sources(hlo_text: str) -> dict[str, tuple[str, str]]:
  """HLO instruction name -> (result shape, model code it comes from)."""
  sources = {}
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if match:
      name, shape, _, op_name = match.groups()
      op_name = re.sub(r"(encoderblock|block)_\d+", "block_*", op_name)
      sources[name] = (shape, re.sub(r"^jit\([^)]*\)/", "", op_name))
  return sources


def op_times(trace_dir: str) -> collections.Counter:
  """Microseconds per traced event name, summed over the trace."""
  (path,) = glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True)
  with gzip.open(path) as f:
    events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  times = collections.Counter()
  for event in events:
    if event.get("ph") == "X":
      times[event["name"]] += event["dur"]
  return times


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  run_once, facts = workloads.project_step(
    config, workloads.synthetic_dataset(config)
  )
  for _ in range(2):
    run_once()
  trace_dir = _TRACE_DIR.value or tempfile.mkdtemp(prefix="profile_step_")
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    for _ in range(_STEPS.value):
      run_once()
  sources = op_sources(facts["compiled"].as_text())
  times = op_times(trace_dir)
  ms = lambda us: us / 1e3 / _STEPS.value
  by_source, by_kind = collections.Counter(), collections.Counter()
  for name, us in times.items():
    if name in sources:
      shape, source = sources[name]
      kind = re.sub(r"\.\d+$", "", name)
      by_source[(source, kind, shape)] += us
      by_kind[kind] += us
  total = sum(by_kind.values())
  print(f"XLA ops: {ms(total):.0f} ms per step; trace in {trace_dir}")
  print("\nBy kind of kernel (ms per step, share):")
  for kind, us in by_kind.most_common(12):
    print(f"{ms(us):9.1f} {us / total:6.1%}  {kind}")
  print("\nBy model code (ms per step, share, kernel, result shape):")
  for (source, kind, shape), us in by_source.most_common(_TOP.value):
    print(f"{ms(us):9.1f} {us / total:6.1%}  {source}  [{kind}] {shape}")


if __name__ == "__main__":
  cli.run(main)
