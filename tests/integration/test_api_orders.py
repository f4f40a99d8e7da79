"""POST /orders once per order id and GET /orders/{id}, on real RabbitMQ (a vhost per test) and PostgreSQL.

A repeat with the same body is answered from the first request and queues nothing (the queue depth says so),
a different body is a 409, a publish that failed records nothing, two requests racing on one id publish once,
and GET follows a real worker from ``pending`` to ``reserved`` or ``rejected``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import httpx
import pytest
from dramatiq import Middleware
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

import actors
from actors.broker import build_broker
from actors.settings import Settings
from api.app import create_app
from api.health import Checks
from services.model import AcceptedOrder, Product
from services.unit_of_work import SqlUnitOfWork, create_schema, make_engine, make_session_factory
from tests.api_support import AUTH, api_keys
from tests.environment.database import own_postgres_database, session
from tests.environment.polling import wait_until
from tests.environment.processes import ServiceProcess
from tests.environment.stack import Stack
from tests.environment.vhost import VhostProbe, own_vhost
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.rabbitmq

ROUTES: dict[str, dramatiq.Actor[Any, Any]] = {
    "orders": actors.place_order,
    "users": actors.register_user,
    "catalog": actors.catalog.refresh_catalog_cache,
}
ORDER = {"order_id": "idem-1", "customer_email": "ada@example.com", "lines": [{"sku": "SKU-A", "quantity": 1}]}


class Gate(Middleware):
    """Holds the first publish until released: the test decides when the first request's publish completes."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(60), "the test never released the first publish"


def make_client(broker_url: str, engine: Engine, *middleware: Middleware) -> tuple[TestClient, dramatiq.Broker]:
    broker = build_broker(Settings(broker_url=broker_url))
    for extra in middleware:
        broker.add_middleware(extra)
    broker.declare_queue("orders", ensure=True)
    factory = make_session_factory(engine)
    app = create_app(
        broker=broker,
        actors=ROUTES,
        jaeger_url="http://jaeger:16686",
        max_body_bytes=65536,
        checks=Checks(),
        api_keys=api_keys(),
        uow=lambda: SqlUnitOfWork(factory),
    )
    return TestClient(app, headers=AUTH), broker


@pytest.fixture
def vhost() -> Iterator[VhostProbe]:
    with own_vhost("tracedq_api_orders") as name:
        yield VhostProbe(name)


@pytest.fixture
def engine() -> Iterator[Engine]:
    """A new PostgreSQL database with the schema, for this test only."""
    with own_postgres_database("tracedq_api_orders") as url:
        created = make_engine(url)
        create_schema(created)
        try:
            yield created
        finally:
            created.dispose()


@pytest.fixture
def client(vhost: VhostProbe, engine: Engine) -> Iterator[TestClient]:
    test_client, broker = make_client(vhost.broker_url, engine)
    yield test_client
    broker.close()


def accepted_rows(engine: Engine) -> int:
    with session(engine) as db:
        return int(db.scalar(select(func.count()).select_from(AcceptedOrder)) or 0)


def test_the_same_order_twice_is_queued_once_and_answered_with_the_first_message(
    client: TestClient, vhost: VhostProbe
) -> None:
    """Same body (keys reordered, version explicit): 202 both times, the first message's id and trace, one message."""
    first = client.post("/orders", json=ORDER)
    again = client.post("/orders", json={"schema_version": 1, **dict(reversed(list(ORDER.items())))})
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert vhost.ready_count("orders") == 1


def test_the_same_order_id_with_another_body_is_a_409(client: TestClient, vhost: VhostProbe, engine: Engine) -> None:
    """409 in the error shape, naming the order and the first message; nothing more is queued."""
    first = client.post("/orders", json=ORDER).json()
    conflict = client.post("/orders", json={**ORDER, "lines": [{"sku": "SKU-A", "quantity": 2}]})
    assert conflict.status_code == 409
    assert conflict.json() == {
        "error": {
            "code": "order_conflict",
            "message": f"order 'idem-1' was already accepted with a different body (message {first['message_id']}); "
            "use a new order_id for a different order",
            "message_id": first["message_id"],
        }
    }
    assert vhost.ready_count("orders") == 1
    assert accepted_rows(engine) == 1


def test_a_publish_that_failed_records_nothing(vhost: VhostProbe, engine: Engine) -> None:
    """RabbitMQ unreachable: 503, no accepted row, GET is 404; the retry then queues the order once."""
    with TcpProxy(("127.0.0.1", 5672)) as proxy:
        broker_url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost.vhost}"
        client, broker = make_client(broker_url, engine)
        try:
            proxy.stop()
            down = client.post("/orders", json=ORDER)
            assert (down.status_code, down.json()["error"]["code"]) == (503, "broker_unavailable")
            assert accepted_rows(engine) == 0
            assert client.get(f"/orders/{ORDER['order_id']}").status_code == 404
            proxy.start()
            assert client.post("/orders", json=ORDER).status_code == 202
        finally:
            broker.close()
    assert vhost.ready_count("orders") == 1
    assert accepted_rows(engine) == 1


def test_two_requests_racing_on_one_order_id_publish_once(vhost: VhostProbe, engine: Engine) -> None:
    """The second request waits on the first one's row until it commits, then answers with its message."""
    gate = Gate()
    client, broker = make_client(vhost.broker_url, engine, gate)
    answers: dict[str, httpx.Response] = {}

    def post(name: str) -> None:
        answers[name] = client.post("/orders", json=ORDER)

    def waiting_on_a_lock() -> bool:
        with engine.connect() as connection:
            query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = :w"
            return bool(connection.scalar(text(query), {"w": "Lock"}))

    try:
        first = threading.Thread(target=post, args=("first",))
        first.start()
        assert gate.entered.wait(30), "the first request never reached its publish"
        second = threading.Thread(target=post, args=("second",))
        second.start()
        assert wait_until(waiting_on_a_lock, 30), "the second request did not wait on the first one's row"
        gate.release.set()
        first.join(60)
        second.join(60)
    finally:
        gate.release.set()
        broker.close()
    assert (answers["first"].status_code, answers["second"].status_code) == (202, 202)
    assert answers["second"].json() == answers["first"].json()
    assert vhost.ready_count("orders") == 1


def test_get_follows_the_order_through_a_real_worker(
    flow_env: Stack, flow_database: Engine, start_flow_worker: Callable[..., ServiceProcess]
) -> None:
    """pending while no worker runs, with the POST's trace; then reserved, or rejected with the reason; 404 unknown."""
    client, broker = make_client(flow_env.broker_url, flow_database)
    try:
        plenty = client.post("/orders", json={**ORDER, "order_id": "get-ok"}).json()
        client.post("/orders", json={**ORDER, "order_id": "get-short", "lines": [{"sku": "SKU-Z", "quantity": 1}]})
        assert client.get("/orders/get-ok").json() == {
            "order_id": "get-ok",
            "status": "pending",
            "reason": None,
            "message_id": plenty["message_id"],
            "trace_id": plenty["trace_id"],
            "trace_url": plenty["trace_url"],
        }
        assert client.get("/orders/nope").json() == {"error": {"code": "not_found", "message": "no order 'nope'"}}
        with session(flow_database) as db:
            db.add(Product(sku="SKU-A", name="A", stock=3))
            db.commit()

        worker = start_flow_worker()

        def settled() -> bool:
            return all(client.get(f"/orders/{oid}").json()["status"] != "pending" for oid in ("get-ok", "get-short"))

        assert wait_until(settled, 60, interval=0.2), worker.describe()
        ok = client.get("/orders/get-ok").json()
        assert (ok["status"], ok["reason"], ok["trace_id"]) == ("reserved", None, plenty["trace_id"])
        short = client.get("/orders/get-short").json()
        assert (short["status"], short["reason"]) == (
            "rejected",
            "insufficient stock: SKU-Z (wanted 1, have unknown product)",
        )
    finally:
        broker.close()
