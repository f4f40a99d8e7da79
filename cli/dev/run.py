"""``tracedq dev`` from start to stop: checks, database, services in order, the wait, the ordered stop.

Nothing starts until every check passed (lock, ports, broker); a service that fails to start stops the ones
already started. Exit codes: 0 stopped as asked (Ctrl-C, SIGTERM, SIGHUP), 1 it could not start or a
service exited on its own.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from typing import IO

from cli.dev.config import DevConfig
from cli.dev.lock import AlreadyRunning, DevLock
from cli.dev.output import Output
from cli.dev.preflight import broker_problem, port_problems
from cli.dev.services import Service, database_step, plan
from cli.dev.supervisor import StartupFailed, Supervisor

__all__ = ["run_dev"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_ORDER = '{"order_id": "o-1", "customer_email": "ada@example.com", "lines": [{"sku": "SKU-APPLE", "quantity": 1}]}'


def run_dev(config: DevConfig, *, stream: IO[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the whole service until stopped. Returns the exit code."""
    out = stream or sys.stdout
    env = os.environ if environ is None else environ
    services = plan(config, env)
    step = database_step(config, env)
    names = [step.name] + [s.name for s in services]
    output = Output(out, names, colour=out.isatty() and "NO_COLOR" not in env)
    try:
        with DevLock(config.lock_path):
            return _run(config, step, services, output)
    except AlreadyRunning as exc:
        output.say(str(exc))
        return 1


def _run(config: DevConfig, step: Service, services: list[Service], output: Output) -> int:
    problems = port_problems(config)
    broker = broker_problem(config.broker_url)
    if broker is not None:
        problems.append(broker)
    if problems:
        for problem in problems:
            output.say(problem)
        output.say("nothing was started")
        return 1
    supervisor = Supervisor(output)
    if supervisor.run_step(step) != 0:
        output.say("nothing was started")
        return 1
    previous = {signum: signal.signal(signum, lambda *_: supervisor.request_stop()) for signum in _STOP_SIGNALS}
    try:
        try:
            for service in services:
                supervisor.start(service)
        except StartupFailed as exc:
            asked = supervisor.stop_requested.is_set()
            output.say(f"{exc}: stopping what was started" if not asked else "stopping")
            supervisor.stop_all()
            return 0 if asked else 1
        _banner(config, output)
        reason = supervisor.watch()
        if reason is not None:
            output.say(f"{reason}: stopping everything")
        else:
            output.say("stopping: api, scheduler, worker (it flushes its spans), smtp, then the collector")
        clean = supervisor.stop_all()
        output.say("all stopped" if clean else "all stopped, some by force (see above)")
        return 0 if reason is None else 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _banner(config: DevConfig, output: Output) -> None:
    api = f"http://127.0.0.1:{config.api_port}"
    lines = [
        f"ready: API {api} (docs at /docs), SMTP 127.0.0.1:{config.smtp_port}, OTLP 127.0.0.1:{config.collector_port}",
        f'try:   curl -si {api}/orders -H "Authorization: Bearer $(cat {config.api_key_path})" \\',
        f"         -H 'Content-Type: application/json' -d '{_ORDER}'",
        "then:  tracedq trace list   (and: trace show TRACE_ID, trace tail, dev emails)",
        "       the 202's trace_url points at Jaeger, which tracedq dev does not run: trace show draws it here",
    ]
    if config.state_dir.as_posix() != ".tracedq":
        store, state = config.store_path, config.state_dir
        lines.append(f"       add --store {store} to the trace commands, --state-dir {state} to dev emails")
    lines.append("Ctrl-C stops everything")
    for line in lines:
        output.say(line)
