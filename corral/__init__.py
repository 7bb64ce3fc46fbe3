"""Corral: Kubernetes-native async Python workers.

>>> import corral
>>> app = corral.App()
>>> @app.task(name="resize", queue="default", timeout=60.0, retries=3)
... async def resize(image_id: str) -> dict: ...
"""

import os as _os

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

# In a source checkout, worker/ and operator/ stand beside this folder at the root of
# the repository; setuptools maps them into corral/ when it builds or installs the
# package. Looking for subpackages beside this folder too makes corral.worker and
# corral.operator import the same way from a checkout as from an installed package.
if not _os.path.isdir(_os.path.join(__path__[0], "worker")):
    __path__.append(_os.path.dirname(__path__[0]))

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
