"""The worker that runs in each pod: claims batches of tasks from Redis, schedules
them locally by priority and queue weight, runs them, and reports what it does."""

from corral.worker.runtime import Worker
from corral.worker.settings import WorkerSettings

__all__ = ["Worker", "WorkerSettings"]
