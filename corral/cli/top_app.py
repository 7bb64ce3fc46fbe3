"""The textual application behind ``corral top``."""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input, Static

from corral.connection import connect
from corral.keys import DEFAULT_PREFIX
from corral.monitor import QUEUE_SORTS, WORKER_SORTS, Monitor, QueueRow, View, WorkerRow, arrange

QUEUE_COLUMNS = ("QUEUE", "BACKLOG", "READY BY PRIORITY", "SCHEDULED", "IN FLIGHT", "DEAD",
                 "STARTED/s", "FINISHED/s", "WAIT p50", "WAIT p99")
WORKER_COLUMNS = ("WORKER", "QUEUES", "IN FLIGHT", "RUNNING", "CONCURRENCY", "LOOP LAG",
                  "HEARTBEAT", "UP")


class TopApp(App[None]):
    """Queues above, workers below; one Redis read per refresh."""

    TITLE = "corral top"
    AUTO_FOCUS = "#queues"  # not the filter box, which would take the keys
    CSS = """
    #status { height: auto; padding: 0 1; }
    #filter { display: none; }
    #filter.shown { display: block; }
    #queues { height: 1fr; }
    #workers { height: 1fr; }
    """
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("s", "sort_queues", "sort queues"),
        Binding("w", "sort_workers", "sort workers"),
        Binding("f,slash", "filter", "filter by queue"),
        Binding("escape", "clear_filter", "clear filter"),
        Binding("r", "refresh_now", "refresh"),
    ]

    def __init__(self, url: str, queues: Sequence[str] | None, interval_s: float,
                 shown_url: str, prefix: str = DEFAULT_PREFIX) -> None:
        super().__init__()
        self._prefix = prefix
        self._url = url
        self._fixed_queues = queues
        self._interval_s = interval_s
        self._shown_url = shown_url
        self._redis: Redis | None = None
        self._monitor: Monitor | None = None
        self._view = View([], [])
        self._error = ""
        self._updated = ""
        self.status_line = ""
        self.queue_filter = ""
        self.queue_sort = 0
        self.worker_sort = 0

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield Input(placeholder="show queues whose name contains...", id="filter")
        yield DataTable(id="queues", cursor_type="row", zebra_stripes=True)
        yield DataTable(id="workers", cursor_type="row", zebra_stripes=True)
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one("#queues", DataTable).add_columns(*QUEUE_COLUMNS)
        self.query_one("#workers", DataTable).add_columns(*WORKER_COLUMNS)
        self._redis = connect(self._url)
        self._monitor = Monitor(self._redis, self._fixed_queues, self._prefix)
        await self.refresh_view()
        self.set_interval(self._interval_s, self.refresh_view)

    async def on_unmount(self) -> None:
        if self._monitor is not None:
            await self._monitor.close()
        if self._redis is not None:
            await self._redis.aclose()

    async def refresh_view(self) -> None:
        assert self._monitor is not None
        try:
            self._view = await self._monitor.refresh()
            self._error = ""
            self._updated = time.strftime("%H:%M:%S")
        except (RedisError, OSError) as exc:
            # Keep the last view and keep trying: Redis coming back shows up by itself.
            self._error = f"redis at {self._shown_url}: {exc}"
        self._render()

    def _render(self) -> None:
        shown = arrange(self._view, self.queue_filter, self.queue_sort, self.worker_sort)
        queues = self.query_one("#queues", DataTable)
        queues.clear()
        for row in shown.queues:
            queues.add_row(*_queue_cells(row), key=row.queue)
        workers = self.query_one("#workers", DataTable)
        workers.clear()
        for worker in shown.workers:
            workers.add_row(*_worker_cells(worker), key=worker.worker_id)
        status = self._status(shown)
        self.status_line = status.plain
        self.query_one("#status", Static).update(status)

    def _status(self, shown: View) -> Text:
        status = Text(f"{self._shown_url}  every {self._interval_s:g} s  ")
        status.append(f"{_count(len(shown.queues), 'queue')}, "
                      f"{_count(len(shown.workers), 'worker')}  ")
        status.append(f"queues by {QUEUE_SORTS[self.queue_sort][0]} (s), "
                      f"workers by {WORKER_SORTS[self.worker_sort][0]} (w)  ")
        status.append(f"filter: {self.queue_filter or '-'} (f)  ")
        status.append(f"updated {self._updated or '-'}")
        if self._error:
            status.append(f"\n{_clean(self._error)}", style="bold red")
        return status

    def action_sort_queues(self) -> None:
        self.queue_sort = (self.queue_sort + 1) % len(QUEUE_SORTS)
        self._render()

    def action_sort_workers(self) -> None:
        self.worker_sort = (self.worker_sort + 1) % len(WORKER_SORTS)
        self._render()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.value = self.queue_filter
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("shown")
        self.queue_filter = ""
        self.query_one("#queues", DataTable).focus()
        self._render()

    async def action_refresh_now(self) -> None:
        await self.refresh_view()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.queue_filter = event.value
        self._render()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.queue_filter = event.value
        event.input.remove_class("shown")
        self.query_one("#queues", DataTable).focus()
        self._render()


def _queue_cells(row: QueueRow) -> list[Text]:
    by_priority = " ".join(
        f"p{p}={n}" for p, n in reversed(list(enumerate(row.ready_by_priority))) if n
    ) or "-"
    return [Text(row.queue), *_right(row.backlog), Text(by_priority),
            *_right(row.scheduled, row.in_flight, row.dead),
            *_right(_rate(row.started_per_s), _rate(row.finished_per_s),
                    _seconds(row.wait_p50_s), _seconds(row.wait_p99_s))]


def _worker_cells(row: WorkerRow) -> list[Text]:
    return [Text(_clean(row.worker_id)), Text(",".join(row.queues) or "-"),
            *_right(row.in_flight, row.running, row.concurrency, _lag(row.loop_lag_ms),
                    _age(row.heartbeat_age_s), _duration(row.uptime_s))]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _right(*values: object) -> list[Text]:
    return [Text(str(v), justify="right") for v in values]


def _rate(per_s: float | None) -> str:
    return "-" if per_s is None else f"{per_s:.1f}"


def _seconds(value_s: float | None) -> str:
    if value_s is None:
        return "-"
    return f"{value_s * 1000:.0f} ms" if value_s < 1 else f"{value_s:.1f} s"


def _lag(value_ms: float) -> str:
    return f"{value_ms:.1f} ms" if value_ms < 1000 else f"{value_ms / 1000:.1f} s"


def _age(value_s: float | None) -> str:
    return "-" if value_s is None else f"{_duration(value_s)} ago"


def _duration(value_s: float | None) -> str:
    if value_s is None:
        return "-"
    if value_s < 60:
        return f"{value_s:.1f} s"
    if value_s < 7200:
        return f"{value_s / 60:.0f} min"
    return f"{value_s / 3600:.1f} h"


def _clean(text: str) -> str:
    # Worker ids and errors come from outside: no control characters on the terminal.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
