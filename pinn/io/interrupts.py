"""Stopping a run on a signal without losing a step: SIGTERM (a pre-empted or time-limited job), SIGINT (Ctrl-C),
and, on SLURM, Lightning's requeue signal SIGUSR1.

A signal can arrive anywhere: inside the backward pass, halfway through the optimizer's update, while a
checkpoint is being written. A checkpoint taken there would not be a state the run ever passed through. So the
handlers of :class:`SignalLatch` only record the signal; :class:`~pinn.io.checkpointing.RunCheckpoint` asks at its
safe points (after an optimizer step, or after the validation that follows it) whether one came, writes
``last.ckpt`` there as its periodic saves do, and ends the run by raising :class:`Interrupted`, whose exit code is
the shell's ``128 + signal number``: 143 for SIGTERM, 130 for SIGINT, 138 for SIGUSR1. ``--ckpt_path last`` then
continues the very same run.

A second Ctrl-C quits at once, without a checkpoint.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from lightning.fabric.plugins.environments import SLURMEnvironment

from pinn import compat

_REQUEUE = getattr(signal, "SIGUSR1", None)  # Lightning's default SLURM requeue signal (absent on Windows)


class Interrupted(SystemExit):
    """Ends a run that a signal stopped after its checkpoint was written; ``code`` is ``128 + signum``, so the
    process exits as a shell reports a process killed by that signal (and a scheduler records a failure)."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


class SignalLatch:
    """Signal handlers that only remember the first signal, for the owner to act on between steps.

    :meth:`install` takes over SIGINT and SIGTERM, and SIGUSR1 when Lightning's SLURM auto-requeue handles it (its
    handler, which saves ``hpc_ckpt_N.ckpt`` and requeues the job, then runs at the safe point instead of
    mid-step: :meth:`requeue`). :meth:`uninstall` puts the previous handlers back.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._forward: Callable[[int], None] | None = None

    def install(self, trainer) -> None:
        """Install the handlers (only the main thread can) and forget any earlier signal."""
        self.signum = None
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        signals = [signal.SIGINT, signal.SIGTERM]
        if _REQUEUE is not None and SLURMEnvironment.detect() and callable(signal.getsignal(_REQUEUE)):
            signals.append(_REQUEUE)
        # Processes started by Lightning's launcher (DDP from one command) do not see a SIGTERM sent to this one;
        # Lightning's own handler, replaced here, forwards it to them, so this one does too.
        self._forward = compat.launcher_kill(trainer)
        for signum in signals:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        """Restore the handlers :meth:`install` replaced (those still in place: Lightning may have restored them)."""
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            if signum == signal.SIGTERM and self._forward is not None:
                self._forward(signum)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: the user does not want to wait for the step to end

    def pending(self, trainer) -> bool:
        """Whether a signal came, on any process: every process must stop at the same step, since writing a
        checkpoint is collective. One tiny all-reduce per call when there are several processes."""
        received = self.signum is not None
        if trainer.world_size > 1:
            return bool(trainer.strategy.reduce_boolean_decision(received, all=False))
        return received

    @property
    def code_signal(self) -> int:
        """The signal to exit with: this process's, or SIGTERM on a process stopped because another got one."""
        return self.signum if self.signum is not None else int(signal.SIGTERM)

    def requeue(self) -> None:
        """Run the requeue handler that SIGUSR1 replaced (Lightning's on SLURM), if that is the signal received."""
        previous = self._previous.get(_REQUEUE) if self.signum == _REQUEUE else None
        if callable(previous):
            previous(self.signum, None)
