"""The engine family: the registry, the native engine's training keys (exactly the keys trainings were stored
under before engines were a family), and the spec's ``[engine]`` section."""

from __future__ import annotations

import pytest

from bench.engine.api import training_key
from bench.engines import get_engine, list_engines
from bench.errors import SpecError
from bench.runner.plan import plan, training_plan
from bench.runner.spec import load_spec, packaged_specs, parse_spec

BASE = 'name = "t"\nfactors = ["multitask", "patch_fusion"]\n'


def test_registry_names_both_engines_and_refuses_others() -> None:
    assert list_engines() == ["native", "nnunet"]
    with pytest.raises(SpecError, match="'nnx' is not one of native, nnunet"):
        get_engine("nnx")


def _native_specs_with_cells() -> list[str]:
    """The packaged specs that run on the native engine and plan their cells up front (a search's design
    chooses its cells as it runs; brats-nnunet-cpu runs on nnunet)."""
    names = []
    for name in sorted(packaged_specs()):
        spec = load_spec(name, check_data=False)
        if spec.engine.name == "native" and any(not c.configuration.refused for c in plan(spec).cells):
            names.append(name)
    return names


NATIVE_SPECS = _native_specs_with_cells()


def test_the_key_check_covers_the_packaged_native_specs() -> None:
    assert {"demo", "table1", "brats-cpu", "fractional"} <= set(NATIVE_SPECS)


@pytest.mark.parametrize("name", NATIVE_SPECS)
def test_native_keys_are_the_stored_keys(name: str) -> None:
    spec = load_spec(name, check_data=False)
    cells = [c for c in plan(spec).cells if not c.configuration.refused][:12]
    for cell in cells:
        stack = cell.configuration.stack()
        folds = stack.folds_for(cell.fold, 5)
        folds = [cell.fold] + [f for f in folds if f != cell.fold] if cell.fold in folds else list(folds)
        before = [(f, training_key("fp", spec.model_config(), spec.train_config(f, cell.seed), stack)) for f in folds]
        assert training_plan(spec, cell.configuration, cell.fold, cell.seed, "fp", 5) == before


def test_engine_section_keeps_native_hashes_and_enters_the_core_otherwise() -> None:
    plain = parse_spec(BASE)
    assert plain.engine.name == "native" and "engine" not in plain.core()
    assert parse_spec(BASE + '[engine]\nname = "native"\n').core_hash() == plain.core_hash()
    nn = parse_spec(BASE + '[engine]\nname = "nnunet"\nspacing = [2, 2, 2]\n[train]\nepochs = 2\n'
                           'iterations_per_epoch = 3\n[inference]\nmirror = true\n')
    assert nn.engine.options == {"plans": "nnUNetPlans", "configuration": "3d_fullres", "spacing": [2.0, 2.0, 2.0]}
    assert nn.core()["engine"]["name"] == "nnunet" and nn.core_hash() != plain.core_hash()
    assert nn.train == {"epochs": 2, "iterations_per_epoch": 3} and nn.inference == {"mirror": True}
    assert get_engine("nnunet").budget_iterations(nn.train) == 6
    # nnunet training keys: shared by inference-only differences, changed by the budget and the plans
    p = plan(nn)
    keys = {c.label: training_plan(nn, c, 0, 0, "fp", 5)[0][1] for c in p.configurations}
    assert keys["BL"] == keys["BL+patch_fusion"] != keys["BL+multitask"]
    other = parse_spec(BASE + '[engine]\nname = "nnunet"\nplans = "nnUNetResEncUNetMPlans"\n[train]\nepochs = 2\n'
                              'iterations_per_epoch = 3\n')
    assert training_plan(other, plan(other).configurations[0], 0, 0, "fp", 5)[0][1] != keys["BL"]


@pytest.mark.parametrize("text, message", [
    ('[engine]\nname = "nnU"\n', "engine.name: engine 'nnU' is not one of native, nnunet"),
    ('[engine]\nname = "nnunet"\nplan = "x"\n', "engine.plan is not a key of the nnunet engine"),
    ('[engine]\nname = "nnunet"\nplans = "big"\n', "engine.plans = 'big' is not one of nnUNetPlans"),
    ('[engine]\nname = "nnunet"\n[train]\niterations = 3\n', "train.iterations is not a key of [train] on the nnunet"),
    ('[engine]\nname = "nnunet"\n[model]\ndepth = 3\n', "model.depth: the nnunet engine takes its network"),
    ('[engine]\nname = "nnunet"\nspacing = [1, 2]\n', "engine.spacing = [1, 2] must be three spacings"),
    ('[engine]\nname = "native"\nplans = "x"\n', "engine.plans is not a key of the native engine"),
])
def test_engine_section_refusals_are_one_line(text: str, message: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec(BASE + text, "s.toml")
    assert str(exc.value).startswith("s.toml: ") and message in str(exc.value) and "\n" not in str(exc.value)


def test_tricks_without_a_form_are_refused_at_parse_time() -> None:
    with pytest.raises(SpecError, match="engine 'nnunet' has no form of dense_blocks"):
        parse_spec('name = "t"\nfactors = ["dense_blocks", "warmup"]\n[engine]\nname = "nnunet"\n', "s.toml")
