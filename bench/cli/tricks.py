"""``bench tricks`` (the table of registered tricks) and ``bench tricks show NAME``. Standard library only at
the top."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "tricks", help="list the registered tricks (phase, slots, parameters, requires/conflicts)",
        description="List the registered tricks, or show one in detail.",
    )
    p.add_argument("--engine", default=None, metavar="NAME",
                   help="what each trick becomes on this engine (native, nnunet); tricks without a form say so")
    sub = p.add_subparsers(dest="tricks_command", metavar="SUBCOMMAND")
    show = sub.add_parser("show", help="one trick in detail: parameters with defaults and search ranges")
    show.add_argument("name", help="trick name")
    show.set_defaults(handler=_show)
    p.set_defaults(handler=_list, subparser=p)


def _params(trick: Any) -> list[tuple[str, str, Any, str, str]]:
    import dataclasses
    import typing

    hints = typing.get_type_hints(trick.Params)
    out = []
    for f in dataclasses.fields(trick.Params):
        typ = hints.get(f.name)
        tname = getattr(typ, "__name__", None) or str(typ).replace("typing.", "")
        spec = f.metadata.get("optuna")
        search = ""
        if spec:
            opts = spec[3] if len(spec) > 3 else {}
            search = (f"{spec[0]} {list(spec[1])}" if spec[0] == "categorical"
                      else f"{spec[0]} [{spec[1]}, {spec[2]}]" + (" log" if opts.get("log") else ""))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        out.append((f.name, tname, default, search, f.metadata.get("help", "")))
    return out


def _forms(name: str) -> int:
    import textwrap

    import tricks
    from bench.engines import get_engine
    from bench.errors import SpecError

    try:
        eng = get_engine(name)
    except SpecError as exc:
        raise SpecError(f"--engine {name}: {exc}") from None
    forms = eng.trick_forms()
    print(f"engine {eng.name}: {eng.summary}\n")
    width = max(len(t.name) for t in tricks.list_tricks())
    print(f"{'name'.ljust(width)}  {'phase'.ljust(9)}  form on {eng.name}")
    print(f"{'-' * width}  {'-' * 9}  {'-' * 40}")
    for t in tricks.list_tricks():
        form = forms.get(t.name)
        lines = textwrap.wrap(form, 110 - width - 13) if form else ["(no form: refused on this engine)"]
        print(f"{t.name.ljust(width)}  {t.phase.ljust(9)}  {lines[0]}")
        for more in lines[1:]:
            print(f"{' ' * width}  {' ' * 9}  {more}")
    n = sum(1 for f in forms.values() if f is not None)
    print(f"\n{n} of {len(forms)} tricks have a form on {eng.name}"
          + ("; a user's trainer class is a factor too: trainer:MODULE.CLASS" if eng.name == "nnunet" else ""))
    return 0


def _list(args: argparse.Namespace) -> int:
    import tricks

    if getattr(args, "engine", None):
        return _forms(args.engine)

    rows = [("name", "phase", "slots", "parameters (defaults)", "requires", "conflicts", "paper")]
    for t in tricks.list_tricks():
        slots = [f"{s}" for s in t.replaces] + [f"{s} (wraps)" for s in t.wraps]
        if t.adds_hooks:
            slots.append("hooks")
        params = ", ".join(f"{n}={d!r}" for n, _, d, _, _ in _params(t)) or "-"
        rows.append((t.name, t.phase, ", ".join(slots) or "-", params, ", ".join(t.requires) or "-",
                     ", ".join(t.conflicts) or "-", t.section))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\n{len(rows) - 1} tricks; `bench tricks show NAME` for details; set parameters with "
          "--set trick.param=value")
    return 0


def _show(args: argparse.Namespace) -> int:
    import tricks

    t = tricks.get(args.name)
    print(f"{t.name}: {t.summary}")
    print(f"  paper section: {t.section}")
    print(f"  phase:         {t.phase}" + ("  (does not change training: shares checkpoints)"
                                           if t.phase == "inference" else ""))
    print(f"  replaces:      {', '.join(t.replaces) or '-'}")
    print(f"  wraps:         {', '.join(t.wraps) or '-'}")
    print(f"  requires:      {', '.join(t.requires) or '-'}")
    print(f"  conflicts:     {', '.join(t.conflicts) or '-'}")
    params = _params(t)
    if not params:
        print("  parameters:    none")
    else:
        print("  parameters:")
        for name, tname, default, search, help_ in params:
            print(f"    {name} ({tname}) = {default!r}" + (f"   search: {search}" if search else "")
                  + (f"   — {help_}" if help_ else ""))
    import sys

    text = (sys.modules[type(t).__module__].__doc__ or "").strip() or (type(t).__doc__ or "").strip()
    if text:
        print()
        print(text)
    return 0
