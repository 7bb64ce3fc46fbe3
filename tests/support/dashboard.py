"""``corral dashboard`` in a subprocess, and headless Chromium to look at it.

The browser is Debian's ``chromium`` driven through Debian's ``chromium-driver`` by
Selenium; both paths are given explicitly, so Selenium never tries to download a driver.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from corral import Client

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "test-dashboard-token-0123456789"
_URL = re.compile(r"dashboard on (http://\S+/) ")


class DashboardProcess:
    """``corral dashboard --port 0``; ``url`` is read from its startup log line."""

    def __init__(self, redis_url: str, args: Sequence[str] = ()) -> None:
        self.command = [sys.executable, "-m", "corral", "dashboard", "--redis-url", redis_url,
                        "--port", "0", "--rescan-seconds", "0", "--sample-seconds", "1",
                        *args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("CORRAL_DASHBOARD_TOKEN", None)
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=env,
                                        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        text=True)
        self.lines: list[str] = []
        self.url = ""
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            match = _URL.search(line)
            if match:
                self.url = match.group(1)
                self._started.set()
        self._started.set()

    def wait_started(self, timeout_s: float = 30.0) -> DashboardProcess:
        if not self._started.wait(timeout_s) or not self.url:
            self.close()
            raise RuntimeError("dashboard did not start:\n" + "\n".join(self.lines[-30:]))
        return self

    def close(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(30)
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code


def chromium(width: int = 1280, height: int = 800) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def inspect_json(redis_url: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "corral", "--redis-url", redis_url, "inspect",
                           "--json"], capture_output=True, text=True, timeout=60, check=True)
    return dict(json.loads(proc.stdout))


async def wait_dead(client: Client, queue: str, n: int) -> None:
    async with asyncio.timeout(60):
        while True:
            if await client.redis.zcard(f"corral:{{{queue}}}:dead") >= n:
                return
            await asyncio.sleep(0.05)


async def wait_in_flight(client: Client, queue: str, n: int) -> None:
    async with asyncio.timeout(60):
        while True:
            if await client.redis.zcard(f"corral:{{{queue}}}:leased") >= n:
                return
            await asyncio.sleep(0.05)


def post(url: str, body: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
