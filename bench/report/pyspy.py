"""Summaries of py-spy profiles of a benchmark child (``tracing_overhead.py --profile``).

py-spy runs as ``record --gil --threads --full-filenames --nonblocking --format raw``: only the thread holding
the GIL is sampled, so the shares are shares of the one core a worker process can use. Frames are sorted into
threads (worker threads, consumer thread, span export, the measured send loop) and components (OTLP export,
our code, the SDK, pika, Dramatiq, ...).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

__all__ = ["summarize_profile"]

_BUCKETS = (  # (component, path fragments); a frame belongs to the first component that matches
    (
        "OTLP export: encode + HTTP",
        (
            "/opentelemetry/exporter/",
            "/opentelemetry/proto/",
            "/google/protobuf/",
            "/requests/",
            "/urllib3/",
            "/http/client.py",
            "/socket.py",
            "/ssl.py",
        ),
    ),
    (
        "our span pipe (observability/sdk: queue, wire, sender, answers)",
        (
            "/observability/sdk/span_pipe.py",
            "/observability/sdk/span_sender.py",
            "/observability/sdk/pending_spans.py",
            "/observability/sdk/span_wire.py",
            "/observability/sdk/export_link.py",
            "/observability/sdk/export_health.py",
        ),
    ),
    ("our middleware (observability/)", ("/observability/",)),
    ("OTel SDK/API: spans, context, propagation", ("/opentelemetry/",)),
    ("structlog (LogContext)", ("/structlog/",)),
    ("our broker and actors (actors/)", ("/actors/",)),
    ("pika (AMQP client)", ("/pika/",)),
    ("dramatiq", ("/dramatiq/",)),
    ("json/uuid/logging", ("/json/", "/uuid.py", "/logging/")),
    ("threading/queue", ("/threading.py", "/queue.py")),
)


def _component(frame: str) -> str:
    for name, needles in _BUCKETS:
        if any(needle in frame for needle in needles):
            return name
    return "other"


def _thread_role(thread: str, frames: list[str]) -> str | None:
    """What a stack's thread is, or None when this stack alone does not tell (non-blocking samples can be cut)."""
    joined = ";".join(frames)
    if ("child_rmq_publish" in joined or "child_burst" in joined) and "/dramatiq/actor.py" in joined:
        return "main thread: the .send() loop (the measured work)"
    if thread == "MainThread" or (frames and frames[0].startswith("<module>")):
        return "setup: main thread imports, setup, waiting (outside the measured work)"
    if "PipeSpanProcessor" in thread or "/observability/sdk/span_pipe.py" in joined:
        return "span pipe threads (flatten + write, read answers)"
    if "BatchSpanProcessor" in thread or "OtelBatch" in thread:
        return "span export thread"
    if "ConsumerThread" in joined:
        return "dramatiq consumer thread (AMQP fetch, ack)"
    if "WorkerThread" in joined:
        return "dramatiq worker threads (8)"
    return None


def _read_raw(raw: Path) -> list[tuple[str, str, list[str], int]]:
    """``(thread id, role, frames, count)`` per line; a thread's role is the one most of its stacks show."""
    rows: list[tuple[str, str, list[str], int]] = []
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        head, *frames = stack.split(";")
        tid, _, name = head.partition(": ")
        role = _thread_role(name or head, frames)
        if role is not None:
            votes[tid][role] += int(count_text)
        rows.append((tid, role or "", frames, int(count_text)))
    return [
        (tid, role or (votes[tid].most_common(1)[0][0] if votes[tid] else "other threads"), frames, count)
        for tid, role, frames, count in rows
    ]


def summarize_profile(raw: Path, top: int = 20, us_per_sample: float | None = None) -> str:
    """Summarise py-spy's raw output (``--gil --threads --full-filenames``) for the worker's own threads.

    With ``--gil`` only the thread holding the GIL is sampled, so shares are shares of the one core the
    process can use. Main-thread samples (imports, broker setup) are reported but left out of the shares.
    """
    by_role: Counter[str] = Counter()
    self_by_component: Counter[str] = Counter()
    incl_by_component: Counter[str] = Counter()
    self_by_func: Counter[str] = Counter()
    total = 0
    main = 0
    for _tid, role, frames, count in _read_raw(raw):
        by_role[role] += count
        if role.startswith("setup"):
            main += count
            continue
        total += count
        if frames:
            self_by_component[_component(frames[-1])] += count
            func, _, where = frames[-1].partition(" (")
            self_by_func[f"{func} ({where.rsplit('/site-packages/', 1)[-1].rsplit('/lib/python3', 1)[-1]}"] += count
        for component in {_component(frame) for frame in frames}:
            incl_by_component[component] += count
    if total == 0:
        return "no samples"
    pct = 100 / total

    def cell(n: int) -> str:
        return f"{n * pct:.1f}%" + (f" ({n * us_per_sample:.0f} µs/msg)" if us_per_sample else "")

    out = [f"{total} GIL-holding samples in the measured threads ({main} more in setup, excluded)."]
    if us_per_sample:
        out.append(f"GIL-busy time in the measured threads: {total * us_per_sample:.0f} µs per message.")
    out.append("")
    out += ["By thread:", ""]
    out += [f"- {role}: {cell(n)}" for role, n in by_role.most_common() if not role.startswith("setup")]
    out += ["", "By component (self = innermost frame; inclusive = anywhere on the stack):", ""]
    for name, n in self_by_component.most_common():
        out.append(f"- {name}: self {cell(n)}, inclusive {cell(incl_by_component[name])}")
    out += ["", f"Top {top} functions by self time:", ""]
    out += [f"- {cell(n)}  {func}" for func, n in self_by_func.most_common(top)]
    return "\n".join(out)
