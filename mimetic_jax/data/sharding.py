"""Which part of a dataset each host process reads: one convention for all.

Every process of a multi-host run reads a disjoint, contiguous block of the
examples; the blocks follow process order, so concatenating them over
`process_index = 0, 1, ...` gives the data back unchanged. Sizes differ by at
most one: with `n` examples and `k` processes the first `n % k` processes get
`n // k + 1` examples and the others `n // k` (`np.array_split`'s rule, which
is also how `tfds.split_for_jax_process` splits a tfds split).
"""

import numpy as np


def shard_for_process(
  array: np.ndarray, process_index: int, process_count: int
) -> np.ndarray:
  """The block of `array` (along axis 0) that process `process_index` reads.

  Args:
    array: (N, ...) examples, or (N,) example indices.
    process_index: this process, in [0, process_count).
    process_count: number of processes sharing `array`.

  Returns:
    (n_i, ...), a view of `array[start:start + n_i]`, where `n_i` is
    `N // process_count + 1` for the first `N % process_count` processes and
    `N // process_count` for the rest, and `start` is the sum of the `n_j` of
    the processes before (see the module docstring).

  Raises:
    ValueError: `process_index` is not in [0, process_count).
  """
  if not 0 <= process_index < process_count:
    raise ValueError(
      f"Need 0 <= process_index < process_count, got {process_index} and "
      f"{process_count}."
    )
  return np.array_split(array, process_count)[process_index]
