"""`corral dashboard` in headless Chromium, against a real Redis and a real worker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis.asyncio
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from corral import Client
from tests.support.dashboard import (
    TOKEN,
    DashboardProcess,
    chromium,
    inspect_json,
    post,
    wait_dead,
    wait_in_flight,
)
from tests.support.workers import WorkerProcess


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def fresh_browser(browser: webdriver.Chrome) -> webdriver.Chrome:
    browser.delete_all_cookies()
    return browser


def cell(driver: webdriver.Chrome, row: str, field: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, f'{row} [data-field="{field}"]').text)


def post_forms(driver: webdriver.Chrome) -> list[str]:
    return [str(f.get_attribute("action")) for f in
            driver.find_elements(By.CSS_SELECTOR, "form[method=post]")]


async def test_the_pages_show_what_corral_inspect_reports(
        redis_url: str, client: Client, fresh_browser: webdriver.Chrome) -> None:
    worker = WorkerProcess(redis_url, args=["--concurrency", "2"]).wait_started()
    dashboard = DashboardProcess(redis_url).wait_started()
    try:
        await client.enqueue("fail", ["boom"])
        await wait_dead(client, "default", 1)
        for seconds in (120, 120):
            await client.enqueue("sleep", [seconds])
        await wait_in_flight(client, "default", 2)
        await client.enqueue("noop", queue="unserved", priority=7)
        for _ in range(3):
            await client.enqueue("noop", queue="unserved", priority=2)
        await client.enqueue("noop", queue="unserved", delay=600)

        fresh_browser.get(dashboard.url)
        expected = inspect_json(redis_url)
        assert set(expected) == {"default", "unserved"}
        for queue, depth in expected.items():
            row = f'tr[data-queue="{queue}"]'
            for field in ("backlog", "scheduled", "scheduled_due", "in_flight", "dead"):
                assert cell(fresh_browser, row, field) == str(depth[field]), (queue, field)
            assert cell(fresh_browser, row, "workers") == str(len(depth["workers"]))
            shown = {el.get_attribute("data-priority"): el.text for el in
                     fresh_browser.find_elements(By.CSS_SELECTOR, f"{row} .prio")}
            assert shown == {p: f"p{p}={n}" for p, n in depth["ready_by_priority"].items()
                             if n}
        assert expected["unserved"]["backlog"] == 4
        assert expected["default"]["in_flight"] == 2
        assert expected["default"]["dead"] == 1

        fresh_browser.get(dashboard.url + "workers")
        [entry] = expected["default"]["workers"]
        row = f'tr[data-worker="{entry["id"]}"]'
        for field in ("in_flight", "running", "concurrency"):
            assert cell(fresh_browser, row, field) == str(entry[field])

        fresh_browser.get(dashboard.url + "dlq?queue=default")
        [dead] = fresh_browser.find_elements(By.CSS_SELECTOR, "#dlq tr[data-task]")
        assert "ValueError: boom" in dead.text
        dead_id = dead.get_attribute("data-task")
        click(fresh_browser, dead.find_element(By.LINK_TEXT, dead_id))
        assert fresh_browser.find_element(By.ID, "state").text == "dead"
        assert fresh_browser.find_element(By.ID, "error").text == "ValueError: boom"
        assert "raise ValueError(message)" in fresh_browser.find_element(
            By.ID, "traceback").get_attribute("textContent")
        assert fresh_browser.find_element(By.ID, "args").text == \
            '{"args": ["boom"], "kwargs": {}}'
        assert post_forms(fresh_browser) == []  # read-only: no action anywhere

        fresh_browser.get(dashboard.url + "tasks?id=no-such-task")
        assert "No task no-such-task" in fresh_browser.find_element(By.ID, "notfound").text
    finally:
        dashboard.close()
        worker.close()


async def test_read_only_mode_has_no_action_forms_and_refuses_actions(
        redis_url: str, client: Client, fresh_browser: webdriver.Chrome) -> None:
    worker = WorkerProcess(redis_url).wait_started()
    dashboard = DashboardProcess(redis_url).wait_started()
    try:
        await client.enqueue("fail", ["boom"])
        running = await client.enqueue("sleep", [120])
        await wait_dead(client, "default", 1)
        await wait_in_flight(client, "default", 1)
        for path in ("", "workers", "dlq?queue=default", f"tasks?id={running.id}"):
            fresh_browser.get(dashboard.url + path)
            assert post_forms(fresh_browser) == [], path
            assert fresh_browser.find_element(By.ID, "mode").text == "read-only"
        status, body = post(dashboard.url + "api/dlq/default/requeue", {"ids": []}, TOKEN)
        assert status == 403 and "--allow-actions" in body["error"]
        assert await client.redis.zcard("corral:{default}:dead") == 1
    finally:
        dashboard.close()
        worker.close()


def loading_next_page(driver: webdriver.Chrome) -> str:
    """Mark the current page, to wait on with :func:`next_page` after a click: reading
    the page before the browser has left it would find the old elements. The mark lives
    in ``window``, which a newly loaded document does not share (an element handle's
    staleness is reported differently by each Chromium release)."""
    mark = uuid.uuid4().hex
    driver.execute_script("window.corralPageMark = arguments[0];", mark)
    return mark


def next_page(driver: webdriver.Chrome, old: str) -> None:
    # A script run while the browser is between documents may fail: ask again.
    wait = WebDriverWait(driver, 30, ignored_exceptions=(WebDriverException,))
    wait.until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && window.corralPageMark !== arguments[0];",
        old))


def click(driver: webdriver.Chrome, element: WebElement) -> None:
    """Click something that loads a page, and wait until the browser has left this one."""
    old = loading_next_page(driver)
    element.click()
    next_page(driver, old)


def submit_forged_form(driver: webdriver.Chrome, action: str, fields: dict[str, str]) -> None:
    """Posts a form the page did not offer, as a script in the page could."""
    old = loading_next_page(driver)
    driver.execute_script("""
        const [action, fields] = arguments;
        const form = document.createElement('form');
        form.method = 'post'; form.action = action;
        for (const [name, value] of Object.entries(fields)) {
            const input = document.createElement('input');
            input.type = 'hidden'; input.name = name; input.value = value;
            form.appendChild(input);
        }
        document.body.appendChild(form); form.submit();
    """, action, fields)
    next_page(driver, old)


async def test_dlq_requeue_needs_the_token(redis_url: str, client: Client,
                                         redis_conn: redis.asyncio.Redis,
                                         fresh_browser: webdriver.Chrome) -> None:
    worker = WorkerProcess(redis_url).wait_started()
    dashboard = DashboardProcess(redis_url, ["--allow-actions", "--token", TOKEN])
    dashboard.wait_started()
    try:
        dead = await client.enqueue("fail", ["boom"])
        await wait_dead(client, "default", 1)
        assert worker.terminate() == 0  # a requeued task stays queued for the checks below
        browser = fresh_browser
        browser.get(dashboard.url + "dlq?queue=default")
        assert browser.find_element(By.ID, "mode").text == "actions need sign-in"
        assert post_forms(browser) == [dashboard.url + "login"]
        csrf = browser.find_element(By.CSS_SELECTOR, "#login input[name=csrf]")
        csrf_value = str(csrf.get_attribute("value"))

        # Without the token: a forged action form, a wrong token, the API without it.
        submit_forged_form(browser, "/actions/dlq", {"csrf": csrf_value, "queue": "default",
                                                     "op": "requeue", "id": dead.id})
        assert "sign in with the dashboard token" in browser.find_element(By.ID,
                                                                          "refused").text
        browser.get(dashboard.url + "dlq?queue=default")
        browser.find_element(By.CSS_SELECTOR, "#login input[name=token]").send_keys(
            "not-the-token-at-all")
        click(browser, browser.find_element(By.CSS_SELECTOR, "#login button"))
        assert browser.find_element(By.ID, "refused").text == "wrong token"
        status, body = post(dashboard.url + "api/dlq/default/requeue", {"ids": [dead.id]})
        assert status == 403
        status, body = post(dashboard.url + "api/dlq/default/requeue", {"ids": [dead.id]},
                            "x" + TOKEN)
        assert (status, body["error"]) == (403, "wrong token")
        assert await redis_conn.zcard("corral:{default}:dead") == 1

        # Signed in, but a form without this browser's CSRF token is refused too.
        browser.get(dashboard.url + "dlq?queue=default")
        browser.find_element(By.CSS_SELECTOR, "#login input[name=token]").send_keys(TOKEN)
        click(browser, browser.find_element(By.CSS_SELECTOR, "#login button"))
        assert browser.find_element(By.ID, "mode").text == "actions on"
        submit_forged_form(browser, "/actions/dlq", {"csrf": "forged", "queue": "default",
                                                     "op": "requeue", "id": dead.id})
        assert "CSRF" in browser.find_element(By.ID, "refused").text
        assert await redis_conn.zcard("corral:{default}:dead") == 1

        # With the token: the page's own Requeue button.
        browser.get(dashboard.url + "dlq?queue=default")
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-task="{dead.id}"]')
        click(browser, row.find_element(By.XPATH, ".//button[text()='Requeue']"))
        assert browser.find_element(By.ID, "notice").text == "Requeued 1 task."
        assert browser.find_elements(By.CSS_SELECTOR, "#dlq tr[data-task]") == []
        depth = inspect_json(redis_url)["default"]
        assert (depth["dead"], depth["ready"]) == (0, 1)
        assert await client.status(dead.id) == "queued"
    finally:
        dashboard.close()
        worker.close()


async def test_cancel_from_the_task_page(redis_url: str, client: Client,
                                         fresh_browser: webdriver.Chrome) -> None:
    worker = WorkerProcess(redis_url).wait_started()
    dashboard = DashboardProcess(redis_url, ["--allow-actions", "--token", TOKEN])
    dashboard.wait_started()
    try:
        running = await client.enqueue("sleep", [120])
        await wait_in_flight(client, "default", 1)
        async with asyncio.timeout(30):  # claimed, then marked started
            while await running.status() != "running":  # noqa: ASYNC110 - state in Redis
                await asyncio.sleep(0.05)
        browser = fresh_browser
        browser.get(dashboard.url)
        browser.find_element(By.CSS_SELECTOR, "#login input[name=token]").send_keys(TOKEN)
        click(browser, browser.find_element(By.CSS_SELECTOR, "#login button"))
        browser.get(dashboard.url + f"tasks?id={running.id}")
        assert browser.find_element(By.ID, "state").text == "running"
        old = loading_next_page(browser)
        browser.find_element(By.XPATH, "//button[text()='Cancel this task']").click()
        browser.switch_to.alert.accept()
        next_page(browser, old)
        assert browser.find_element(By.ID, "notice").text == "Cancelled."
        assert browser.find_element(By.ID, "state").text == "cancelled"
        assert await client.status(running.id) == "cancelled"
    finally:
        dashboard.close()
        worker.close()


async def test_no_redis_password_reaches_a_page(redis_url: str, redis_conn: redis.asyncio.Redis,
                                                fresh_browser: webdriver.Chrome) -> None:
    password = "s3cret-redis-password"
    await redis_conn.execute_command("ACL", "SETUSER", "dash", "on", f">{password}", "~*",
                                     "&*", "+@all")
    try:
        with_password = redis_url.replace("redis://", f"redis://dash:{password}@")
        dashboard = DashboardProcess(with_password).wait_started()
        try:
            assert password not in dashboard.url + "\n".join(dashboard.lines)
            for path in ("", "workers", "dlq", "tasks?id=x", "api/queues"):
                fresh_browser.get(dashboard.url + path)
                assert password not in fresh_browser.page_source, path
            fresh_browser.get(dashboard.url)
            assert "dash:***@" in fresh_browser.find_element(By.CSS_SELECTOR, ".where").text
        finally:
            dashboard.close()
    finally:
        await redis_conn.execute_command("ACL", "DELUSER", "dash")
