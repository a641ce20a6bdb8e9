"""SIGTERM (preemption) and SIGINT (Ctrl-C) as context managers.

`InterruptHandler` installs a handler for both signals on entry and restores
the previous handlers on exit; subclasses say what a signal does.
`StopSignal` turns one into a flag the train loop checks each step, so that
it can save a checkpoint before it exits.
"""

import signal
import types

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class InterruptHandler:
  """Base class: `handle(name)` runs on SIGTERM / SIGINT while entered."""

  def __init__(self):
    self.received: str | None = None  # Name of the last signal, e.g. SIGTERM.
    self._previous = {}

  def __enter__(self):
    for sig in _SIGNALS:
      self._previous[sig] = signal.signal(sig, self._on_signal)
    return self

  def __exit__(self, *exc) -> bool:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False

  def _on_signal(self, signum: int, frame: types.FrameType | None) -> None:
    del frame
    self.handle(signal.Signals(signum))

  def handle(self, sig: signal.Signals) -> None:
    raise NotImplementedError


class StopSignal(InterruptHandler):
  """The first signal sets `received`; a second one gives up immediately."""

  def handle(self, sig: signal.Signals) -> None:
    if self.received:
      raise KeyboardInterrupt
    self.received = sig.name
