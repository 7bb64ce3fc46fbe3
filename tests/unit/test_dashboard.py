"""The dashboard's pure parts: who may act (CSRF, token, sessions), escaping of
everything that comes from Redis, the throughput samples, and the command line."""

from __future__ import annotations

import argparse

import pytest

from corral.admin import DeadTask
from corral.cli import main
from corral.cli.args import UsageError
from corral.depths import QueueDepth, WorkerInfo
from corral.serialization import encode_error
from corral_dashboard import render
from corral_dashboard.cli import settings_of
from corral_dashboard.data import TRUNCATE_CHARS, task_record, workers_of
from corral_dashboard.sampler import History
from corral_dashboard.security import CSRF_COOKIE, SESSION_COOKIE, Guard, same

TOKEN = "a-long-enough-token-123"
EVIL = '<script>alert("x")</script>'


# -- who may act ------------------------------------------------------------------------


def test_same_takes_equal_non_empty_strings_only() -> None:
    assert same("abc", "abc")
    assert not same("abc", "abd")
    assert not same("", "")


def signed_in_cookies(guard: Guard, csrf: str = "csrf-1") -> dict[str, str]:
    return {CSRF_COOKIE: csrf, SESSION_COOKIE: guard.session_for(csrf)}


def test_a_read_only_guard_refuses_everything() -> None:
    guard = Guard(None)
    assert not guard.actions_allowed
    assert "--allow-actions" in (guard.refusal({"Authorization": f"Bearer {TOKEN}"}, {}, "")
                                 or "")
    assert not guard.signed_in(signed_in_cookies(guard))
    assert guard.sign_in_refusal({CSRF_COOKIE: "c"}, "c", TOKEN) is not None


def test_a_bearer_token_must_match() -> None:
    guard = Guard(TOKEN)
    assert guard.refusal({"Authorization": f"Bearer {TOKEN}"}, {}, "") is None
    assert guard.refusal({"Authorization": f"Bearer {TOKEN}x"}, {}, "") == "wrong token"
    assert guard.refusal({"Authorization": "Bearer "}, {}, "") == "wrong token"


def test_a_browser_needs_a_session_and_its_own_csrf_token() -> None:
    guard = Guard(TOKEN)
    cookies = signed_in_cookies(guard)
    assert guard.refusal({}, cookies, "csrf-1") is None
    assert guard.refusal({"X-CSRF-Token": "csrf-1"}, cookies, "") is None
    assert "CSRF" in (guard.refusal({}, cookies, "csrf-2") or "")
    assert "CSRF" in (guard.refusal({}, cookies, "") or "")
    assert "sign in" in (guard.refusal({}, {CSRF_COOKIE: "csrf-1"}, "csrf-1") or "")


def test_a_session_cannot_be_moved_or_forged() -> None:
    guard = Guard(TOKEN)
    stolen = guard.session_for("csrf-1")
    assert not guard.signed_in({CSRF_COOKIE: "csrf-2", SESSION_COOKIE: stolen})
    # A restarted dashboard has a new key: old sessions end.
    assert not Guard(TOKEN).signed_in(signed_in_cookies(guard))
    assert not guard.signed_in({CSRF_COOKIE: "csrf-1", SESSION_COOKIE: "0" * 64})


def test_sign_in_needs_the_csrf_token_and_the_token() -> None:
    guard = Guard(TOKEN)
    cookies = {CSRF_COOKIE: "c1"}
    assert guard.sign_in_refusal(cookies, "c1", TOKEN) is None
    assert guard.sign_in_refusal(cookies, "c1", "wrong") == "wrong token"
    assert "CSRF" in (guard.sign_in_refusal(cookies, "c2", TOKEN) or "")
    assert "CSRF" in (guard.sign_in_refusal({}, "", TOKEN) or "")


def test_neither_the_token_nor_the_key_shows_in_the_guard_repr() -> None:
    guard = Guard(TOKEN)
    assert TOKEN not in repr(guard) and str(guard.key) not in repr(guard)


# -- rendering --------------------------------------------------------------------------


def view(*, actions: bool = False, signed_in: bool = False,
         grafana_url: str | None = None) -> render.View:
    return render.View(redis_url="redis://user:***@redis:6379/0", grafana_url=grafana_url,
                       actions=actions, signed_in=signed_in, csrf='c"sr<f', now_ms=10_000)


def worker(worker_id: str, queue: str, in_flight: int = 1, running: int = 1,
           heartbeat_ms: int = 9_000) -> WorkerInfo:
    return WorkerInfo(worker_id, in_flight, running, 8, (queue,), 1_000, heartbeat_ms)


def depth(queue: str, workers: tuple[WorkerInfo, ...] = ()) -> QueueDepth:
    return QueueDepth(queue, (1, 0, 2, 0, 0, 0, 0, 0, 0, 3), scheduled=4, scheduled_due=1,
                      in_flight=5, dead=6, workers=workers)


def dead(task_id: str = 'id"1') -> DeadTask:
    return DeadTask(task_id, EVIL, 3, "Value<Error>", EVIL, f"Traceback\n{EVIL}", 5_000)


def test_queues_page_shows_each_number_in_its_cell() -> None:
    html = render.queues_page(view(), {"default": depth("default")}, {})
    assert '<tr data-queue="default">' in html
    assert '<td class=num data-field="backlog">7</td>' in html
    assert '<td class=num data-field="in_flight">5</td>' in html
    assert '<span class=prio data-priority="9">p9=3</span>' in html
    assert '<a href="/dlq?queue=default">6</a>' in html


def test_worker_ids_are_escaped() -> None:
    html = render.workers_page(view(), workers_of([depth("q", (worker(EVIL, "q"),))]))
    assert EVIL not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_task_fields_are_escaped_and_the_search_is_not_reflected_raw() -> None:
    record = task_record("t1", "default", {
        b"name": EVIL.encode(), b"state": b"dead", b"attempts": b"2",
        b"payload": b'{"args": ["</pre><script>x()</script>"], "kwargs": {}}',
        b"error": encode_error(EVIL, EVIL, EVIL),
    })
    html = render.task_page(view(actions=True, signed_in=True), EVIL, record)
    assert "<script>" not in html.replace('<script src="/static/dashboard.js" defer></script>',
                                          "")
    assert html.count("&lt;script&gt;") >= 4


def test_dead_tasks_are_escaped_in_text_and_attributes() -> None:
    html = render.dlq_page(view(actions=True, signed_in=True), ["default"], "default",
                           [dead()], 1)
    assert EVIL not in html
    assert 'data-task="id&quot;1"' in html
    assert 'href="/tasks?id=id%221"' in html
    assert 'value="id&quot;1"' in html  # the requeue form's hidden id


def test_read_only_pages_have_no_action_forms() -> None:
    record = task_record("t1", "default", {b"state": b"running"})
    pages = [
        render.queues_page(view(), {"default": depth("default")}, {}),
        render.dlq_page(view(), ["default"], "default", [dead()], 1),
        render.task_page(view(), "t1", record),
    ]
    for html in pages:
        assert "method=post" not in html
        assert "read-only" in html


def test_signed_out_pages_offer_only_the_sign_in_form() -> None:
    html = render.dlq_page(view(actions=True), ["default"], "default", [dead()], 1)
    assert html.count("method=post") == 1
    assert 'action="/login"' in html
    assert 'name="csrf" value="c&quot;sr&lt;f"' in html


def test_signed_in_forms_carry_the_csrf_token() -> None:
    record = task_record("t1", "default", {b"state": b"running"})
    html = render.task_page(view(actions=True, signed_in=True), "t1", record)
    assert 'action="/actions/cancel"' in html
    forms = html.count("<form method=post")
    assert html.count('name="csrf" value="c&quot;sr&lt;f"') == forms == 2  # cancel, sign out


def test_finished_tasks_offer_no_cancel() -> None:
    record = task_record("t1", "default", {b"state": b"succeeded", b"result": b"42"})
    html = render.task_page(view(actions=True, signed_in=True), "t1", record)
    assert "/actions/cancel" not in html
    assert "<pre id=result>42</pre>" in html


@pytest.mark.parametrize(("url", "shown"), [
    ("https://admin:pw@grafana.example/d/corral?x=1", "https://grafana.example/d/corral?x=1"),
    ("http://grafana:3000/d/abc", "http://grafana:3000/d/abc"),
    ("javascript:alert(1)", None),
    ("", None),
])
def test_grafana_links_are_http_without_credentials(url: str, shown: str | None) -> None:
    assert render.safe_link(url) == shown
    html = render.queues_page(view(grafana_url=url), {}, {})
    assert "pw@" not in html and "javascript:" not in html
    assert (shown is not None) == ("Grafana" in html)


def test_sparkline_needs_two_samples() -> None:
    assert "sampling" in render.sparkline([1.0])
    svg = render.sparkline([0.0, 2.0, 1.0], width=100, height=20)
    assert svg.startswith("<svg") and 'points="0.0,18.0 50.0,2.0 100.0,10.0"' in svg


# -- data -------------------------------------------------------------------------------


def test_a_worker_serving_two_queues_is_one_row_with_summed_counts() -> None:
    rows = workers_of([depth("a", (worker("w1", "a", 2, 1, 8_000),)),
                       depth("b", (worker("w1", "b", 3, 2, 9_000), worker("w2", "b")))])
    assert [(r.worker_id, r.queues, r.in_flight, r.running, r.heartbeat_ms)
            for r in rows] == [("w1", ("a", "b"), 5, 3, 9_000), ("w2", ("b",), 1, 1, 9_000)]


def test_long_arguments_are_truncated_and_reasons_become_errors() -> None:
    payload = b'{"args": ["' + b"x" * (2 * TRUNCATE_CHARS) + b'"], "kwargs": {}}'
    record = task_record("t", "q", {b"payload": payload, b"reason": b"malformed task",
                                    b"state": b"dead", b"token": b"w:1", b"dead_ms": b"7"})
    assert record.args_truncated and len(record.args) == TRUNCATE_CHARS + 1
    assert (record.error_type, record.error_message) == ("DeadLetter", "malformed task")
    assert record.times_ms == {"dead_ms": 7}
    assert "w:1" not in str(record.json())  # the lease token is not shown


def test_history_turns_counts_into_rates() -> None:
    history = History(samples=3)
    queues = {"q": depth("q")}
    history.sample(100.0, queues)
    history.count_finished("q", 10)
    history.count_finished("other", 4)  # a queue not sampled is dropped
    history.sample(102.0, queues)
    history.sample(104.0, queues)
    history.sample(106.0, queues)
    assert [(s.at_s, s.finished, s.finished_per_s, s.backlog)
            for s in history.series("q")] == [
        (102.0, 10, 5.0, 7), (104.0, 0, 0.0, 7), (106.0, 0, 0.0, 7)]
    assert history.series("other") == []


# -- the command line -------------------------------------------------------------------


def args(**overrides: object) -> argparse.Namespace:
    base: dict[str, object] = dict(
        redis_url="redis://r:6379/0", host="127.0.0.1", port=0, allow_actions=False,
        token=None, grafana_url=None, queues=None, rescan_seconds=30.0, sample_seconds=5.0,
        secure_cookies=False)
    return argparse.Namespace(**(base | overrides))


def test_actions_need_a_long_enough_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CORRAL_DASHBOARD_TOKEN", raising=False)
    with pytest.raises(UsageError, match="--allow-actions needs a token"):
        settings_of(args(allow_actions=True))
    with pytest.raises(UsageError, match="at least 16"):
        settings_of(args(allow_actions=True, token="short"))
    monkeypatch.setenv("CORRAL_DASHBOARD_TOKEN", TOKEN)
    assert settings_of(args(allow_actions=True)).token == TOKEN
    # Without --allow-actions a token in the environment does not turn actions on.
    assert settings_of(args()).token is None


def test_allow_actions_without_a_token_is_one_line_and_exit_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CORRAL_DASHBOARD_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard", "--allow-actions"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "corral dashboard: error: --allow-actions needs a token: pass --token or set "
        "$CORRAL_DASHBOARD_TOKEN"]


def test_the_task_page_says_how_long_the_attempt_waited_and_ran() -> None:
    record = task_record("t1", "default", {
        b"state": b"succeeded", b"enq_ms": b"1000", b"ready_ms": b"1000",
        b"started_ms": b"1250", b"finished_ms": b"4250"})
    html = render.task_page(view(), "t1", record)
    assert "<tr><th>Timings</th><td>waited 250 ms, ran 3.0 s</td></tr>" in html
    assert "<th>Enqueued</th>" in html and "<th>Finished</th>" in html
