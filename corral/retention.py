"""How long Redis keeps what: the defaults a queue running millions of tasks a day can
live with (docs/reliability.md#retention gives the memory each state costs).

- A queued or scheduled record never expires: it is the task.
- A finished record (succeeded, failed, cancelled) loses its payload at once and is
  kept, with its result or error, for the task's ``result_ttl`` (0: not at all).
- A dead record keeps its payload (so it can be requeued) for ``dead_ttl``; the
  dead-letter queue of one queue holds at most ``max_dead`` tasks, the ones closest to
  expiry going first.
"""

from __future__ import annotations

DEFAULT_RESULT_TTL_S = 600.0
DEFAULT_DEAD_TTL_S = 7 * 86_400.0
DEFAULT_MAX_DEAD = 100_000
