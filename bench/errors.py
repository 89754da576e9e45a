"""User-facing errors.

Every problem caused by the user's input (a file, a spec key, a flag) is raised as a :class:`BenchError`
subclass whose message names the file or key, says what was wrong and what would be accepted. The CLI
prints the message on one line and exits with status 2; no traceback is shown for these.
"""

from __future__ import annotations

__all__ = ["BenchError", "DataError", "SpecError", "TrickError", "CheckpointError", "StoreError", "TrainingDiverged"]


class BenchError(Exception):
    """Bad input: the CLI maps it to one line on stderr and exit code 2."""

    exit_code = 2


class DataError(BenchError):
    """A dataset folder, a NIfTI file or a prepared cache is unusable."""


class SpecError(BenchError):
    """An experiment spec (runs/*.toml) or a command-line option is invalid."""


class TrickError(BenchError):
    """A trick name, a trick parameter or a combination of tricks is refused."""


class CheckpointError(BenchError):
    """A checkpoint is missing, corrupt or belongs to another model shape."""


class StoreError(BenchError):
    """A results database, experiment or label asked for does not exist or cannot be used."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf. Not a user error: a runner records it as the cell's failure reason."""

    def __init__(self, iteration: int, last_finite_loss: float | None, message: str | None = None):
        self.iteration = iteration
        self.last_finite_loss = last_finite_loss
        super().__init__(
            message
            or f"loss is not finite at iteration {iteration} (last finite loss: "
            f"{'none' if last_finite_loss is None else f'{last_finite_loss:.6g}'}); "
            "the last good checkpoint is kept"
        )
