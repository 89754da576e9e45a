"""Command-line overrides of a spec work on its parsed TOML table; a spec they do not change keeps its text."""

from __future__ import annotations

import hashlib
import sys

import pytest

from bench.errors import SpecError
from bench.runner.overrides import dump_toml, override_spec
from bench.runner.spec import load_spec, packaged_specs, parse_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OPTIONS = {"full": "--grid", "ladder": "--ladder", "optuna": "--optuna", "trials": "--trials"}


@pytest.mark.parametrize("name", sorted(packaged_specs()))
def test_dump_toml_round_trips_every_packaged_spec(name):
    raw = tomllib.loads(packaged_specs()[name].read_text(encoding="utf-8"))
    assert tomllib.loads(dump_toml(raw)) == raw


def test_dump_toml_writes_nested_tables_arrays_of_tables_and_odd_keys():
    raw = {"name": "x", "f": 1e-05, "b": False, "l": [1, 2.5, "a\"b"], "params": {"warmup": {"epochs": 2}},
           "rows": [{"label": "A", "tricks": [], "params": {"warmup": {"epochs": 1}}}, {"label": "B"}],
           "data": {"synthetic": {"cases": 4}, "path": "synthetic"}, "odd key": {"ü": "é"}}
    assert tomllib.loads(dump_toml(raw)) == raw


def test_overrides_change_the_stored_text_and_keep_the_rest():
    spec = load_spec("demo", check_data=False)
    out = override_spec(spec, design="optuna", trials=3, test_ids=["a", "b"], options=OPTIONS)
    raw, new = tomllib.loads(spec.text), tomllib.loads(out.text)
    assert new["design"] == "optuna" and new["optuna"]["trials"] == 3 and out.optuna.trials == 3
    assert new["data"]["test_ids"] == ["a", "b"] and out.data.test_ids == ("a", "b")
    for key in set(raw) - {"design", "optuna", "data"}:
        assert new[key] == raw[key]
    assert out.hash == hashlib.sha256(out.text.encode()).hexdigest()[:16] != spec.hash
    assert parse_spec(out.text, "stored", check_data=False).core() == out.core()  # what workers read back


def test_an_override_that_changes_nothing_keeps_the_text_and_hash():
    spec = load_spec("demo", check_data=False)
    assert override_spec(spec, design=spec.design, options=OPTIONS) is spec
    search = override_spec(spec, design="optuna", options=OPTIONS)
    again = override_spec(search, trials=search.optuna.trials, options=OPTIONS)
    assert again is search and again.hash == search.hash


def test_override_messages_name_the_option():
    spec = parse_spec('name = "l"\ndesign = "list"\n[[rows]]\nlabel = "A"\ntricks = []\n', "l.toml",
                      check_data=False)
    with pytest.raises(SpecError, match=r"^l.toml: --grid needs factors$"):
        override_spec(spec, design="full", options=OPTIONS)
    with pytest.raises(SpecError, match=r"^--trials is only used by Optuna searches \(--optuna or design = "
                                        r"'optuna'\)$"):
        override_spec(spec, trials=3, options=OPTIONS)


def test_spec_hashes_of_stored_experiments_do_not_move():
    """Stored experiments carry these hashes (``Spec.hash`` of the text; ``core_hash`` compared on extension):
    a new spec key left at its default must not change them."""
    text = 'name = "h"\ndesign = "ladder"\nfactors = ["warmup"]\nseeds = [0, 1]\n[train]\niterations = 4\n'
    spec = parse_spec(text, "<text>", check_data=False)
    assert (spec.hash, spec.core_hash()) == ("ebbb06d100fc6f61", "59e3b2a96707ea5a")
