"""Corral's own error types."""

from __future__ import annotations


class CorralError(Exception):
    """Base class of every error Corral raises on purpose."""


class InvalidTask(CorralError, ValueError):
    """A task cannot be enqueued as given (bad priority, arguments not JSON, too large…)."""


class TaskFailed(CorralError):
    """The task ended without a result. ``type``, ``message`` and ``traceback``
    describe the error raised in the worker (or the reason it was dead-lettered)."""

    def __init__(self, task_id: str, state: str, type: str, message: str, traceback: str = ""):
        super().__init__(f"task {task_id} {state}: {type}: {message}")
        self.task_id = task_id
        self.state = state
        self.type = type
        self.message = message
        self.traceback = traceback


class TaskCancelled(TaskFailed):
    """The task was cancelled before it produced a result."""


class ConfigError(CorralError, ValueError):
    """Configuration that cannot work (a bad URL, an unknown app path…)."""
