"""A callback for tests/test_interrupts.py that holds a ``pinn fit`` subprocess at a chosen step until the test
has sent its signal, so the signal lands at a known step however slow the machine is.

Loaded by the CLI in the subprocess (``trainer.callbacks`` in a test config), so it must be importable as
``tests.interrupt_probe`` from the repository root.
"""

from __future__ import annotations

import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class PauseAt(Callback):
    """At the end of training step ``step``, write ``folder/paused`` and wait until ``folder/signalled`` exists.

    The test sends the signal, then creates ``signalled``. The kernel delivers a pending signal before this process
    returns from the system call that finds the file, and Python runs the handler before the next line here: the
    run has registered the signal when the wait ends.

    Args:
        step: The global step to pause at.
        folder: Where the two marker files go.
    """

    def __init__(self, step: int = 1, folder: str = ".") -> None:
        self.step, self.folder = step, Path(folder)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        (self.folder / "paused").write_text(str(self.step))
        deadline = time.monotonic() + 120
        while not (self.folder / "signalled").exists() and time.monotonic() < deadline:
            time.sleep(0.01)


class CrashAt(Callback):
    """Raise ``RuntimeError`` at the start of training step ``step`` (an error in the middle of a run).

    Args:
        step: The global step whose batch start raises.
    """

    def __init__(self, step: int = 1) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"crash at step {self.step}")
