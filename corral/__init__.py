"""Corral: Kubernetes-native async Python workers.

>>> import corral
>>> app = corral.App()
>>> @app.task(name="resize", queue="default", timeout=60.0, retries=3)
... async def resize(image_id: str) -> dict: ...
"""

from corral.app import App, TaskDef
from corral.client import Client, Enqueue, Progress, TaskHandle
from corral.context import TaskContext, current_task
from corral.depths import QueueDepth, WorkerInfo, read_queue_depths
from corral.errors import (
    ConfigError,
    CorralError,
    InvalidTask,
    TaskCancelled,
    TaskFailed,
)
from corral.hooks import Middleware
from corral.scripts import PermissionDenied
from corral.states import Status
from corral.sync import SyncClient, SyncTaskHandle
from corral.tasks import BoundTask, Task

__version__ = "0.1.0"

__all__ = [
    "App",
    "BoundTask",
    "Client",
    "ConfigError",
    "CorralError",
    "Enqueue",
    "InvalidTask",
    "Middleware",
    "PermissionDenied",
    "Progress",
    "QueueDepth",
    "Status",
    "SyncClient",
    "SyncTaskHandle",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskDef",
    "TaskFailed",
    "TaskHandle",
    "WorkerInfo",
    "current_task",
    "read_queue_depths",
]
