"""Corral: Kubernetes-native async Python workers.

>>> import corral
>>> app = corral.App()
>>> @app.task(name="resize", queue="default", timeout=60.0, retries=3)
... async def resize(image_id: str) -> dict: ...
"""

from corral.app import App, TaskDef
from corral.client import Client, Enqueue, TaskHandle
from corral.depths import QueueDepth, WorkerInfo, read_queue_depths
from corral.errors import (
    ConfigError,
    CorralError,
    InvalidTask,
    TaskCancelled,
    TaskFailed,
)

__version__ = "0.1.0"

__all__ = [
    "App",
    "Client",
    "ConfigError",
    "CorralError",
    "Enqueue",
    "InvalidTask",
    "QueueDepth",
    "TaskCancelled",
    "TaskDef",
    "TaskFailed",
    "TaskHandle",
    "WorkerInfo",
    "read_queue_depths",
]
