"""Errors the pipeline raises for problems a user can fix.

Each message names what went wrong and what to do about it, so the command line
prints it as one line instead of a traceback.
"""


class PipelineError(Exception):
    """Base class for every user-facing error of the project."""


class DataError(PipelineError, ValueError):
    """The data set is missing, malformed or unusable."""


class DownloadError(PipelineError):
    """A file could not be downloaded or failed verification."""


class UnsafeArchiveError(DataError):
    """An archive holds a member that would land outside its target directory."""


class ExplanationRefused(ValueError):
    """A predictor that cannot explain its predictions (an ensemble); the message says what to do instead."""


class CheckpointError(PipelineError):
    """A checkpoint or model directory is missing, damaged or from another format version."""


class FormatVersionError(CheckpointError):
    """A checkpoint or model file of a format version this release does not read."""


class TrainingError(PipelineError):
    """Training cannot go on (for example, the loss became NaN)."""


class TrainingInterrupted(PipelineError):
    """Training stopped on a signal after writing a checkpoint to resume from."""

    def __init__(self, message: str, signum: int, checkpoint: str):
        super().__init__(message)
        self.signum = signum
        self.checkpoint = checkpoint


class TimeLimitReached(PipelineError):
    """The time limit (``--max-minutes``) ran out during language-model pretraining; its checkpoint continues
    the run."""


class ResumeRefused(PipelineError):
    """A resumed run would change the data or the model of the checkpoint it continues."""
