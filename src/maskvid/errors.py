"""maskvid's exceptions: every error a user can cause names the file or key and the problem.

All derive from :class:`MaskvidError`, so ``except MaskvidError`` catches anything maskvid raises on purpose.
"""

from __future__ import annotations

import os


class MaskvidError(Exception):
    """Base class of every error maskvid raises on bad input."""


class VideoDecodeError(MaskvidError):
    """A video file cannot be opened or decoded (missing, empty, truncated, no video stream, too short, ...)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class AnnotationError(MaskvidError):
    """An annotation list or class-names file is malformed; lists every bad line with its number."""

    def __init__(self, path: str | os.PathLike, problems: list[tuple[int, str]]):
        self.path = str(path)
        self.problems = problems
        shown = "\n".join(f"  {self.path}:{line}: {why}" for line, why in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} malformed line(s) in {self.path}:\n{shown}{more}")


class ConfigError(MaskvidError):
    """A configuration key has a value outside what it allows."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"config key '{key}': {problem}")


class InputError(MaskvidError, ValueError):
    """A tensor handed to a public function has the wrong shape, dtype or values (a video that is not
    ``(B, C, T, H, W)``, a mask of another grid); names the argument, what was expected and what came."""

    def __init__(self, name: str, problem: str):
        self.name = name
        self.problem = problem
        super().__init__(f"argument '{name}': {problem}")


class DataError(MaskvidError):
    """A dataset cannot go on: too many bad videos, or no good one left to retry with."""


class CheckpointError(MaskvidError):
    """A checkpoint is missing, incomplete, incompatible, or unsafe to load."""
