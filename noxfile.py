"""Automation: `nox -s tests` (the whole suite, as CI runs it), `lint`, `typecheck`, `bench` (speed figures)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

# The CPU build of torch is installed first so that nothing pulls a multi-GB CUDA build; the project's own
# requirement stays open (torch>=2.4) for GPU users.
TORCH_CPU = "torch==2.13.0"


def _install(session: nox.Session, *extras: str) -> None:
    session.install(TORCH_CPU)
    spec = "." if not extras else f".[{','.join(extras)}]"
    session.install("-e", spec)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite (PostgreSQL, an MLflow server and pdflatex are used for real; nnU-Net too)."""
    _install(session, "test", "nnunet")
    session.run("python", "-m", "pytest", "-q", *session.posargs, env={"PYTHONUNBUFFERED": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "bench", "tricks", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy on bench/ and tricks/."""
    _install(session, "test")
    session.install("mypy>=1.10", "pandas-stubs", "types-tqdm")
    session.run("mypy", "bench", "tricks")


@nox.session
def bench(session: nox.Session) -> None:
    """Speed benchmarks against their peers (medpy, MONAI, nibabel, a bare model step)."""
    _install(session, "test", "bench")
    for script in sorted(__import__("pathlib").Path("benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
