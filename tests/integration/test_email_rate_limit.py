"""The email rate limit is shared through real Redis: the limit holds across two workers' limiters."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from actors import bootstrap
from actors.settings import Settings
from tests.environment.servers import require_redis

REDIS_URL = "redis://127.0.0.1:6379/15"


def test_two_workers_share_one_window(tmp_path: Path) -> None:
    """Limit 3 per second: two processes' limiters (same Redis) grant 3 sends in a window, not 6."""
    require_redis(REDIS_URL)
    redis.Redis.from_url(REDIS_URL).flushdb()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", redis_url=REDIS_URL, email_rate_limit=3)
    first, second = bootstrap.build(settings), bootstrap.build(settings)
    for _ in range(5):  # the window is a wall-clock second: start right after a boundary, retry if we crossed one
        time.sleep(1.02 - time.time() % 1)
        second_started = int(time.time())
        grants = []
        for limiter in (first.email_limiter, second.email_limiter) * 3:
            with limiter.acquire(raise_on_failure=False) as acquired:
                grants.append(bool(acquired))
        if int(time.time()) == second_started:
            break
        redis.Redis.from_url(REDIS_URL).flushdb()
    else:
        pytest.fail("could not fit six acquisitions into one wall-clock second")
    assert grants == [True, True, True, False, False, False]
    assert any(key.startswith(b"email-send@") for key in redis.Redis.from_url(REDIS_URL).scan_iter())
