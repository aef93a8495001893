"""Exceptions the CLI turns into one line and exit code 2."""

from __future__ import annotations


class EdgeXcnnError(Exception):
    """A problem with what the user gave us (a path, a file, an option), not a bug.

    The message is shown to the user as is, on one line, so it must name the problem.
    """


class BadModelFile(EdgeXcnnError):
    """A model file that is missing, damaged, foreign, or would need unpickling."""


class BadData(EdgeXcnnError):
    """A dataset path or data spec that is missing, empty or not in the expected format."""


class MissingDependency(EdgeXcnnError):
    """An optional dependency this command needs is not installed."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"this needs the Python package '{module}': pip install 'edge-xcnn[{extra}]'")


class TrainingFailed(EdgeXcnnError):
    """Training ran but produced a model that fails a check it must pass (e.g. an inverted map)."""
