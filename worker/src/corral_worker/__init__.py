"""The worker that runs in each pod: claims batches of tasks from Redis, schedules
them locally by priority and queue weight, runs them, and reports what it does."""

from corral_worker.runtime import Worker
from corral_worker.settings import WorkerSettings

__all__ = ["Worker", "WorkerSettings"]
