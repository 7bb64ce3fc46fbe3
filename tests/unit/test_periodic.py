"""The pure tick computation of periodic tasks, and @app.periodic's options."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from corral import App
from corral.errors import ConfigError
from corral.periodic import (
    ON_TIME_MS,
    CatchUp,
    Cron,
    Every,
    due_ticks,
    from_definition,
    latest_ticks,
    next_tick_ms,
)

BERLIN = ZoneInfo("Europe/Berlin")


def _ms(text: str, zone: ZoneInfo | None = None) -> int:
    moment = datetime.fromisoformat(text)
    return int(moment.replace(tzinfo=moment.tzinfo or zone or UTC).timestamp() * 1000)


def _berlin(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, BERLIN).isoformat()


def test_every_ticks_on_multiples_of_the_interval_since_the_epoch() -> None:
    every = Every(30_000)
    assert next_tick_ms(every, 0) == 30_000
    assert next_tick_ms(every, 29_999) == 30_000
    assert next_tick_ms(every, 30_000) == 60_000  # strictly after
    assert latest_ticks(every, 30_000, 125_000, 10) == [60_000, 90_000, 120_000]
    assert latest_ticks(every, 0, 120_000, 2) == [90_000, 120_000]  # the latest, oldest first


def test_cron_ticks_in_its_time_zone() -> None:
    cron = Cron("0 9 * * *", "Europe/Berlin")
    after = _ms("2026-06-01T12:00:00", BERLIN)
    assert _berlin(next_tick_ms(cron, after)) == "2026-06-02T09:00:00+02:00"
    winter = _ms("2026-12-01T12:00:00", BERLIN)
    assert _berlin(next_tick_ms(cron, winter)) == "2026-12-02T09:00:00+01:00"
    five = Cron("*/5 * * * *", "UTC")
    start = _ms("2026-01-01T00:00:00")
    ticks = latest_ticks(five, start, start + 20 * 60_000, 100)
    assert [(t - start) // 60_000 for t in ticks] == [5, 10, 15, 20]  # until is included


def test_cron_across_daylight_saving_time() -> None:
    # 2026-03-29 02:00 does not exist in Berlin (clocks go to 03:00); 2026-10-25 02:30
    # happens twice. Like Debian's cron: the skipped run happens at 03:00, the doubled
    # one once.
    cron = Cron("30 2 * * *", "Europe/Berlin")
    spring = next_tick_ms(cron, _ms("2026-03-28T12:00:00", BERLIN))
    assert _berlin(spring) == "2026-03-29T03:00:00+02:00"
    autumn_start = _ms("2026-10-24T12:00:00", BERLIN)
    autumn = latest_ticks(cron, autumn_start, autumn_start + 86_400_000 + 3_600_000, 10)
    assert [_berlin(t) for t in autumn] == ["2026-10-25T02:30:00+02:00"]
    hourly = Cron("0 * * * *", "Europe/Berlin")  # 25 hours that day, 25 ticks
    day = latest_ticks(hourly, _ms("2026-10-24T23:30:00", BERLIN),
                       _ms("2026-10-25T23:30:00", BERLIN), 100)
    assert len(day) == 25 and len(set(day)) == 25


def test_catch_up_policies_after_a_gap() -> None:
    every = Every(60_000)
    last = 600_000
    now = last + 10 * 60_000 + 5_000  # ten ticks missed
    assert due_ticks(every, CatchUp.LATEST, 100, last, now) == [now - 5_000]
    assert due_ticks(every, CatchUp.ALL, 100, last, now) == [
        last + n * 60_000 for n in range(1, 11)]
    assert due_ticks(every, CatchUp.ALL, 3, last, now) == [now - 5_000 - n * 60_000
                                                           for n in (2, 1, 0)]
    # none: a tick found on time runs; a missed one does not.
    assert due_ticks(every, CatchUp.NONE, 100, last, now) == [now - 5_000]
    hourly = Every(3_600_000)
    late = 3_600_000 + ON_TIME_MS + 1
    assert due_ticks(hourly, CatchUp.NONE, 100, 0, late) == []
    assert due_ticks(hourly, CatchUp.LATEST, 100, 0, late) == [3_600_000]


def test_nothing_is_due_before_the_next_tick() -> None:
    for catch_up in CatchUp:
        assert due_ticks(Every(1000), catch_up, 10, 5000, 5999) == []
        assert due_ticks(Every(1000), catch_up, 10, 5000, 6000) == [6000]


def test_a_definition_round_trips_and_damage_is_refused() -> None:
    app = App()

    @app.periodic(cron="*/5 * * * *", timezone="Europe/Berlin", args=[1], kwargs={"a": 2},
                  queue="reports", priority=3, catch_up="all", max_catch_up=7)
    async def report(n: int, a: int) -> None: ...

    schedule = app.schedules[report.name]
    assert from_definition(schedule.name, "reports", schedule.definition()) == schedule
    for bad in ('{"every_ms": 0}', "[]", "not json", '{"cron": "x", "timezone": "UTC"}'):
        with pytest.raises(ValueError):
            from_definition("s", "q", bad)


def test_periodic_registers_a_task_and_its_schedule() -> None:
    app = App()

    @app.periodic(every=timedelta(seconds=30))
    async def cleanup() -> None: ...

    assert cleanup.name in app.tasks
    schedule = app.schedules[cleanup.name]
    assert schedule.cadence == Every(30_000) and schedule.catch_up is CatchUp.LATEST
    assert schedule.queue == "default" and schedule.task == cleanup.name

    @app.task(queue="mail", retries=3)
    async def digest(kind: str) -> None: ...

    app.periodic(cron="0 8 * * MON", name="weekly-digest", args=["weekly"])(digest)
    app.periodic(every=86_400, name="daily-digest", args=["daily"])(digest)
    assert app.schedules["weekly-digest"].queue == "mail"
    assert app.schedules["weekly-digest"].cadence == Cron("0 8 * * MON", "UTC")
    assert app.schedules["daily-digest"].args == ("daily",)


@pytest.mark.parametrize(("options", "message"), [
    ({}, "exactly one of every= and cron="),
    ({"every": 5, "cron": "* * * * *"}, "exactly one of every= and cron="),
    ({"every": 0.5}, "every must be at least 1 second"),
    ({"every": "5"}, "every: input should be a valid timedelta"),
    ({"every": 5, "timezone": "UTC"}, "timezone applies to cron= only"),
    ({"cron": "61 * * * *"}, "invalid cron expression"),
    ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"every": 5, "catch_up": "some"}, "catch_up: input should be"),
    ({"every": 5, "max_catch_up": 0}, "max_catch_up: input should be greater"),
    ({"every": 5, "priority": 10}, "priority: input should be less"),
    ({"every": 5, "args": [object()]}, "not JSON-serialisable"),
    ({"every": 5, "queue": "no spaces"}, "invalid queue name"),
])
def test_bad_options_raise_config_error(options: dict[str, object], message: str) -> None:
    app = App()

    async def job() -> None: ...

    with pytest.raises(ConfigError, match=message):
        app.periodic(**options)(job)  # type: ignore[arg-type]
    assert not app.tasks and not app.schedules  # nothing half-registered


def test_a_schedule_name_is_registered_once() -> None:
    app = App()

    @app.task
    async def job() -> None: ...

    app.periodic(every=60)(job)
    with pytest.raises(ConfigError, match="registered twice"):
        app.periodic(every=120)(job)
