"""Token streams cut into the fixed-length windows a causal LM trains on.

A window holds `seq_len + 1` tokens; `inputs = window[:-1]` and `targets =
window[1:]`. Consecutive windows share one token at their boundary,
`window[i] = tokens[i * seq_len : i * seq_len + seq_len + 1]`, so every token
after the first is a target exactly once. `pack` drops an incomplete last
window (training); `pack_eval` pads it with `PAD_ID` and returns a mask of
the real targets, so an eval split is scored exactly once.
"""

import numpy as np

from mimetic_jax.data.tokenizers import PAD_ID


def pack(
  tokens: np.ndarray, seq_len: int, *, stride: int | None = None
) -> np.ndarray:
  """Cuts `tokens` into windows of `seq_len + 1` tokens.

  Window i is `tokens[i * stride : i * stride + seq_len + 1]`; a final window
  that would run past the end is dropped. With the default
  `stride = seq_len`, consecutive windows share one token, so every token
  after the first is a target (`window[1:]`) exactly once.

  Args:
    tokens: int (T,) token ids.
    seq_len: model input length.
    stride: step between window starts; defaults to `seq_len`.

  Returns:
    int32 (max(0, (T - seq_len - 1) // stride + 1), seq_len + 1).

  Raises:
    ValueError: `tokens` is not 1-D, or `seq_len` or `stride` is below 1.
  """
  stride = seq_len if stride is None else stride
  tokens = np.asarray(tokens, np.int32)
  if tokens.ndim != 1 or seq_len < 1 or stride < 1:
    raise ValueError(
      f"pack needs 1-D tokens and seq_len, stride >= 1; got tokens of shape "
      f"{tokens.shape}, seq_len={seq_len}, stride={stride}."
    )
  if len(tokens) < seq_len + 1:
    return np.zeros((0, seq_len + 1), np.int32)
  windows = np.lib.stride_tricks.sliding_window_view(tokens, seq_len + 1)
  return np.array(windows[::stride])


def pack_eval(
  tokens: np.ndarray, seq_len: int, *, pad_id: int = PAD_ID
) -> tuple[np.ndarray, np.ndarray]:
  """Packs `tokens` like `pack`, padding the last window so none is lost.

  Args:
    tokens: int (T,) token ids.
    seq_len: model input length.
    pad_id: id filling the padded tail.

  Returns:
    windows: int32 (M, seq_len + 1) with M = ceil((T - 1) / seq_len).
    mask: bool (M, seq_len), True where `windows[:, 1:]` is a real target;
      `mask.sum() == max(T - 1, 0)`.
  """
  tokens = np.asarray(tokens, np.int32)
  num_targets = max(len(tokens) - 1, 0)
  num_windows = -(-num_targets // seq_len)
  padded = np.full(num_windows * seq_len + 1, pad_id, np.int32)
  padded[: len(tokens)] = tokens
  mask = np.arange(num_windows * seq_len) < num_targets
  return pack(padded, seq_len), mask.reshape(num_windows, seq_len)
