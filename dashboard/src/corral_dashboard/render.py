"""Server-rendered HTML. Pure functions from data to markup.

Everything that comes from Redis or from the request goes through ``esc`` (text and
attribute values alike) or ``quote`` (path and query parts); nothing else is
interpolated into markup. The pages need no script to work: ``dashboard.js`` only adds
auto-refresh and a confirmation before destructive actions.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from urllib.parse import quote, urlsplit, urlunsplit

from corral.admin import DeadTask
from corral.depths import QueueDepth
from corral.records import Attempt, TaskRecord, ran_text, timings_text
from corral.states import LIVE_STATES
from corral_dashboard.data import WorkerRow
from corral_dashboard.sampler import Sample
from corral_dashboard.security import CSRF_FIELD


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def q(value: str) -> str:
    return quote(value, safe="")


@dataclass(frozen=True, slots=True)
class View:
    """What every page shows around its content."""

    redis_url: str  # already redacted
    grafana_url: str | None
    actions: bool
    signed_in: bool
    csrf: str
    now_ms: int

    @property
    def can_act(self) -> bool:
        return self.actions and self.signed_in


def safe_link(url: str | None) -> str | None:
    """An http(s) link without credentials, or None."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if ":" in parts.hostname:
        host = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


_NAV = (("queues", "/", "Queues"), ("workers", "/workers", "Workers"),
        ("tasks", "/tasks", "Task search"), ("dlq", "/dlq", "Dead letters"))


def page(view: View, title: str, active: str, body: str) -> str:
    links = "".join(
        f'<a href="{href}"{" class=active" if key == active else ""}>{label}</a>'
        for key, href, label in _NAV
    )
    grafana = safe_link(view.grafana_url)
    if grafana:
        links += f'<a href="{esc(grafana)}" rel="noreferrer" target="_blank">Grafana ↗</a>'
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · Corral</title>"
        '<link rel=stylesheet href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script></head><body>'
        f'<header><strong>Corral</strong><nav>{links}</nav>'
        f'<span class=where>{esc(view.redis_url)} · {_mode(view)}</span></header>'
        f"<main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )


def _mode(view: View) -> str:
    if not view.actions:
        return '<span class=mode id=mode>read-only</span>'
    if view.signed_in:
        return ('<span class=mode id=mode>actions on</span> '
                + form(view, "/logout", "Sign out", {}, css="inline"))
    return ('<span class=mode id=mode>actions need sign-in</span> '
            '<form method=post action="/login" class=inline id=login>'
            f'<input type=hidden name="{CSRF_FIELD}" value="{esc(view.csrf)}">'
            '<input type=password name=token placeholder="dashboard token" '
            'autocomplete=current-password required>'
            '<button type=submit>Sign in</button></form>')


def form(view: View, action: str, label: str, hidden: dict[str, str], *,
         confirm: str | None = None, css: str = "") -> str:
    fields = "".join(f'<input type=hidden name="{esc(k)}" value="{esc(v)}">'
                     for k, v in hidden.items())
    extra = f' data-confirm="{esc(confirm)}"' if confirm else ""
    cls = f' class="{esc(css)}"' if css else ""
    return (f'<form method=post action="{esc(action)}"{cls}{extra}>'
            f'<input type=hidden name="{CSRF_FIELD}" value="{esc(view.csrf)}">{fields}'
            f"<button type=submit>{esc(label)}</button></form>")


def notice(text: str | None, ok: bool = True) -> str:
    if not text:
        return ""
    return f'<p class="notice {"ok" if ok else "bad"}" id=notice>{esc(text)}</p>'


def sparkline(values: Sequence[float], width: int = 160, height: int = 28) -> str:
    if len(values) < 2:
        return '<span class=muted>sampling…</span>'
    top = max(values) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - v / top * (height - 4):.1f}"
                      for i, v in enumerate(values))
    return (f'<svg class=spark width={width} height={height} viewBox="0 0 {width} {height}" '
            f'role=img aria-label="peak {top:.1f}/s"><polyline points="{points}"/></svg>')


def ago(now_ms: int, then_ms: int) -> str:
    if not then_ms:
        return "-"
    seconds = max(0.0, (now_ms - then_ms) / 1000)
    if seconds < 120:
        return f"{seconds:.1f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + "Z" if ms else "-"


def _cell(name: str, value: object) -> str:
    return f'<td class=num data-field="{esc(name)}">{esc(value)}</td>'


def queues_page(view: View, depths: dict[str, QueueDepth],
                series: dict[str, list[Sample]]) -> str:
    if not depths:
        return page(view, "Queues", "queues", "<p class=muted>No queues found in this Redis.</p>")
    head = ("<tr><th>Queue</th><th>Backlog</th><th>Ready by priority</th><th>Scheduled</th>"
            "<th>Due now</th><th>In flight</th><th>Dead</th><th>Workers</th>"
            "<th>Finished/s</th><th>Throughput</th></tr>")
    rows = []
    for name, d in depths.items():
        samples = series.get(name, [])
        rate = f"{samples[-1].finished_per_s:.1f}" if samples else "-"
        by_priority = " ".join(
            f'<span class=prio data-priority="{p}">p{p}={n}</span>'
            for p, n in reversed(list(enumerate(d.ready_by_priority))) if n
        ) or '<span class=muted>-</span>'
        dead = (f'<a href="/dlq?queue={q(name)}">{d.dead}</a>' if d.dead else "0")
        rows.append(
            f'<tr data-queue="{esc(name)}"><td>{esc(name)}</td>{_cell("backlog", d.backlog)}'
            f"<td>{by_priority}</td>{_cell('scheduled', d.scheduled)}"
            f"{_cell('scheduled_due', d.scheduled_due)}{_cell('in_flight', d.in_flight)}"
            f'<td class=num data-field=dead>{dead}</td>{_cell("workers", len(d.workers))}'
            f'{_cell("finished_per_s", rate)}'
            f"<td>{sparkline([s.finished_per_s for s in samples])}</td></tr>"
        )
    body = (
        '<p class=muted>Backlog: tasks that could start now (ready, and scheduled ones '
        'that are due). In flight: claimed by a worker, running or prefetched. '
        '<label><input type=checkbox id=autorefresh> refresh every 5 s</label></p>'
        f'<table id=queues>{head}{"".join(rows)}</table>'
    )
    return page(view, "Queues", "queues", body)


def workers_page(view: View, workers: Sequence[WorkerRow]) -> str:
    if not workers:
        return page(view, "Workers", "workers",
                    "<p class=muted>No live workers in the registry.</p>")
    head = ("<tr><th>Worker</th><th>Queues</th><th>In flight</th><th>Running</th>"
            "<th>Concurrency</th><th>Loop lag</th><th>Started</th><th>Last heartbeat</th></tr>")
    rows = "".join(
        f'<tr data-worker="{esc(w.worker_id)}"><td>{esc(w.worker_id)}</td>'
        f"<td>{esc(', '.join(w.queues))}</td>{_cell('in_flight', w.in_flight)}"
        f"{_cell('running', w.running)}{_cell('concurrency', w.concurrency)}"
        f"{_cell('loop_lag', f'{w.loop_lag_ms:.1f} ms')}<td>{esc(when(w.started_ms))}</td>"
        f"<td data-field=heartbeat>{esc(ago(view.now_ms, w.heartbeat_ms))}</td></tr>"
        for w in workers
    )
    return page(view, "Workers", "workers", f"<table id=workers>{head}{rows}</table>")


def task_page(view: View, task_id: str, record: TaskRecord | None,
              message: str | None = None, ok: bool = True) -> str:
    search = ('<form method=get action="/tasks" class=search>'
              f'<input name=id value="{esc(task_id)}" placeholder="task id" size=40'
              f'{"" if task_id else " autofocus"}><button type=submit>Find</button></form>')
    body = search + notice(message, ok)
    if task_id and record is None:
        body += f'<p class="notice bad" id=notfound>No task {esc(task_id)} in any queue ' \
                '(unknown, or its record expired).</p>'
    if record is not None:
        body += _record(view, record)
    return page(view, "Task search", "tasks", body)


def _record(view: View, r: TaskRecord) -> str:
    rows: list[tuple[str, str]] = [
        ("Id", esc(r.id)), ("Queue", esc(r.queue)), ("Name", esc(r.name)),
        ("Status", f'<span class="state {esc(r.state)}" id=state>{esc(r.state)}</span>'),
        ("Priority", esc(r.priority)), ("Attempts", esc(r.attempts)),
    ]
    if r.key:
        rows.append(("De-duplication key", esc(r.key)))
    for name, ms in r.times_ms.items():
        rows.append((_TIME_LABELS.get(name, name), esc(when(ms))))
    timings = timings_text(r.times_ms)
    if timings:
        rows.append(("Timings", esc(timings)))
    rows.append(("Arguments", _pre(r.args, r.args_truncated, "args")))
    if r.result:
        rows.append(("Result", _pre(r.result, r.result_truncated, "result")))
    if r.error_type or r.error_message:
        rows.append(("Error", f"<code id=error>{esc(r.error_type)}: {esc(r.error_message)}"
                              "</code>"))
    if r.traceback:
        rows.append(("Traceback", f"<pre id=traceback>{esc(r.traceback)}</pre>"))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    actions = ""
    if view.can_act and r.state in LIVE_STATES:
        actions = form(view, "/actions/cancel", "Cancel this task",
                       {"id": r.id, "queue": r.queue}, confirm=f"Cancel task {r.id}?")
    return f"<table class=record id=record>{table}</table>{_history(r.history)}{actions}"


_TIME_LABELS = {"enq_ms": "Enqueued", "ready_ms": "Ready from", "started_ms": "Started",
                "finished_ms": "Finished", "dead_ms": "Dead since"}


def _history(history: Sequence[Attempt]) -> str:
    """The ended attempts, newest first: who ran each, when, and how it ended."""
    if not history:
        return ""
    rows = []
    for a in reversed(history):
        error = f"{a.error_type}: {a.error_message}" if a.error_type else ""
        tb = (f"<details><summary>traceback</summary><pre class=traceback>{esc(a.traceback)}"
              "</pre></details>") if a.traceback else ""
        rows.append(
            f"<tr class=attempt><td class=num>{a.number}</td><td>{esc(a.worker)}</td>"
            f"<td>{esc(when(a.started_ms))}</td><td>{esc(ran_text(a) or '-')}</td>"
            f"<td>{esc(a.outcome)}</td><td><code>{esc(error)}</code>{tb}</td></tr>")
    head = ("<tr><th>#</th><th>Worker</th><th>Started</th><th>Ran</th><th>Outcome</th>"
            "<th>Error</th></tr>")
    return f"<h3>Attempts</h3><table class=attempts id=attempts>{head}{''.join(rows)}</table>"


def _pre(text: str, truncated: bool, element_id: str) -> str:
    note = ' <span class=muted>(truncated)</span>' if truncated else ""
    return f"<pre id={element_id}>{esc(text)}</pre>{note}"


def dlq_page(view: View, queues: Iterable[str], queue: str, tasks: Sequence[DeadTask],
             total: int, message: str | None = None, ok: bool = True) -> str:
    options = "".join(f'<option{" selected" if name == queue else ""} value="{esc(name)}">'
                      f"{esc(name)}</option>" for name in queues)
    picker = ('<form method=get action="/dlq" class=search><label>Queue '
              f"<select name=queue>{options}</select></label>"
              "<button type=submit>Show</button></form>")
    body = picker + notice(message, ok)
    body += f'<p>{total} dead in <strong>{esc(queue)}</strong>; showing {len(tasks)}.</p>'
    if view.can_act and tasks:
        body += ('<div class=actions>'
                 + form(view, "/actions/dlq", "Requeue all",
                        {"queue": queue, "op": "requeue", "all": "yes"},
                        confirm=f"Requeue every dead task of {queue}?")
                 + form(view, "/actions/dlq", "Purge all",
                        {"queue": queue, "op": "purge", "all": "yes"},
                        confirm=f"Delete every dead task of {queue}? This cannot be undone.")
                 + "</div>")
    rows = "".join(_dead_row(view, queue, t) for t in tasks)
    head = ("<tr><th>Id</th><th>Name</th><th>Attempts</th><th>Dead since</th>"
            "<th>Error</th><th></th></tr>")
    if tasks:
        body += f"<table id=dlq>{head}{rows}</table>"
    return page(view, "Dead letters", "dlq", body)


def _dead_row(view: View, queue: str, t: DeadTask) -> str:
    trace = (f"<details><summary>traceback</summary><pre>{esc(t.traceback)}</pre></details>"
             if t.traceback else "")
    actions = ""
    if view.can_act:
        actions = (form(view, "/actions/dlq", "Requeue",
                        {"queue": queue, "op": "requeue", "id": t.id}, css="inline")
                   + form(view, "/actions/dlq", "Purge",
                          {"queue": queue, "op": "purge", "id": t.id}, css="inline",
                          confirm=f"Delete dead task {t.id}?"))
    return (f'<tr data-task="{esc(t.id)}"><td><a href="/tasks?id={q(t.id)}">{esc(t.id)}</a>'
            f"</td><td>{esc(t.name or '-')}</td><td class=num>{t.attempts}</td>"
            f"<td>{esc(when(t.dead_ms))}</td>"
            f"<td><code>{esc(t.error_type)}: {esc(t.message)}</code>{trace}</td>"
            f"<td>{actions}</td></tr>")


def message_page(view: View, title: str, text: str) -> str:
    return page(view, title, "", f'<p class="notice bad" id=refused>{esc(text)}</p>'
                                 '<p><a href="/">Back to the queues</a></p>')
