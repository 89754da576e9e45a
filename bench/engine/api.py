"""What the runner and the CLI call: the training key, one training, predictions.

::

    from bench.engine.api import training_key, train, predict, TrainResult, TrainingStopped
    stack = tricks.resolve(["dense_blocks", "self_ensemble", "warmup"], {"warmup": {"epochs": 5}})
    key = training_key(ds.fingerprint, model_cfg, train_cfg, stack)
    result = train(ds, workspace / "trainings" / key, model_cfg, train_cfg, stack)
    icfg = stack.inference_config(InferenceConfig())            # applies patch_fusion etc.
    ckpts = [checkpoint_of(fold) for fold in stack.folds_for(fold, ds.n_folds)]   # model_fusion: all folds
    for case_id, labels in predict(ckpts, ds, ds.test_ids(), icfg):
        ...  # labels: uint8 BraTS-2019 labels on the case's source grid

``train`` is resumable: called again on the same ``out_dir`` it continues from the last checkpoint (or returns
at once when the training finished). ``stop`` (a ``threading.Event``) is checked every iteration: when set,
a checkpoint is saved and :class:`TrainingStopped` is raised; calling ``train`` again continues exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.engine.checkpoint import FINAL_CHECKPOINT, LAST_CHECKPOINT
from bench.engine.config import ENGINE_VERSION, InferenceConfig, ModelConfig, TrainConfig, key_fields
from bench.engine.recipe import ProgressFn, TrainContext, TrainingStopped, TrainResult, baseline_recipe

__all__ = ["ENGINE_VERSION", "training_key", "train", "predict", "select_postprocess", "TrainResult",
           "TrainingStopped", "FINAL_CHECKPOINT", "LAST_CHECKPOINT"]


def training_key(fingerprint: str, model_cfg: ModelConfig, train_cfg: TrainConfig, stack: Any) -> str:
    """Hash of everything that changes a training's result: data fingerprint, model, budget/optimiser
    (incl. fold and seed), the training-phase tricks with their parameters, and ENGINE_VERSION.

    Machine settings (device, AMP, workers, prefetch, checkpoint and validation cadence) are left out;
    inference-phase tricks are left out (cells differing only in them share trainings).
    """
    payload = {
        "engine": ENGINE_VERSION,
        "data": fingerprint,
        "model": key_fields(model_cfg),
        "train": key_fields(train_cfg),
        "tricks": stack.training_items() if stack is not None else [],
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _json_default(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serialisable: {v!r}")


def train(dataset: Any, out_dir: str | Path, model_cfg: ModelConfig, train_cfg: TrainConfig, stack: Any = None,
          *, resume: bool = True, progress: ProgressFn | None = None,
          stop: threading.Event | None = None) -> TrainResult:
    """Run the stack's procedure (default: one training of ``train_cfg.fold``) into ``out_dir``.

    ``out_dir`` receives ``last.pt`` (rolling checkpoint), ``final.pt`` (finished) and ``curve.json``.
    ``progress(info)`` is called after every iteration with ``iteration`` (done), ``total``, ``loss``, ``lr``,
    ``epoch`` (and ``val`` after a validation). Raises ``TrainingDiverged`` on a NaN/Inf loss,
    :class:`TrainingStopped` when ``stop`` is set, ``bench.errors.CheckpointError`` if ``out_dir`` holds a
    checkpoint of another model or training.
    """
    model_cfg.validate()
    train_cfg.validate()
    recipe = stack.build(baseline_recipe(train_cfg)) if stack is not None else baseline_recipe(train_cfg)
    ctx = TrainContext(dataset=dataset, out_dir=Path(out_dir), model_cfg=model_cfg, train_cfg=train_cfg,
                       recipe=recipe, stack=stack, resume=resume, progress=progress, stop=stop)
    return recipe.procedure(ctx)


def predict(checkpoints: Sequence[str | Path] | str | Path, dataset: Any, case_ids: Sequence[str],
            inference_cfg: InferenceConfig | None = None, *, device: str | None = None,
            progress: ProgressFn | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Predict ``case_ids`` of a prepared dataset with one model or the average of several (probabilities).

    Yields ``(case_id, labels)`` with ``labels`` uint8 BraTS-2019 labels {0,1,2,4} on the case's SOURCE grid
    (probabilities resampled from the working grid to the brain's bounding box, outside it background).
    Write them with ``bench.data.writers.write_prediction``. ``device`` overrides ``inference_cfg.device``.
    DataError when ``dataset`` was prepared otherwise than the checkpoints' training data (spacing,
    normalisation, crop), CheckpointError when fused checkpoints disagree on it.
    ``progress`` gets ``{"case": case_id, "done": n, "total": N}``.
    """
    from bench.engine.checkpoint import check_preprocessing, load_checkpoint, model_preprocessing
    from bench.engine.infer import load_models, predict_case

    cfg = inference_cfg or InferenceConfig()
    if device is not None:
        cfg = dataclasses.replace(cfg, device=device)
    cfg.validate()
    if isinstance(checkpoints, (str, Path)):
        checkpoints = [checkpoints]
    # the data must be prepared as the models' training data was (fused models must agree among themselves)
    record = model_preprocessing([(c, load_checkpoint(c)) for c in checkpoints])
    check_preprocessing(record, dataset, str(getattr(dataset, "root", "the prepared data")))
    if any(step.select == "validation" for step in cfg.postprocess):
        cfg, lines = select_postprocess(checkpoints, dataset, cfg)
        for line in lines:
            logging.getLogger("bench.engine").info("post-processing chosen on validation: %s", line)
    models, window, dev = load_models([Path(c) for c in checkpoints], cfg)
    ids = list(case_ids)
    for i, cid in enumerate(ids):
        labels = predict_case(models, dataset, cid, cfg, window=window, device=dev)
        if progress is not None:
            progress({"case": cid, "done": i + 1, "total": len(ids)})
        yield cid, labels


def select_postprocess(checkpoints: Sequence[str | Path], dataset: Any,
                       inference_cfg: InferenceConfig) -> tuple[InferenceConfig, list[str]]:
    """``inference_cfg`` with every ``select = "validation"`` post-processing step chosen on validation cases
    (see :mod:`bench.engine.postprocess`), and one line per chosen step.

    Each checkpoint's own fold (``train_cfg.fold``) gives the validation cases it predicts, so model fusion is
    judged out of fold. SpecError naming the trick when there are no validation cases (a split without
    validation, e.g. ``data.folds = 1``).
    """
    from bench.engine.checkpoint import load_checkpoint
    from bench.engine.postprocess import choose_steps
    from bench.errors import SpecError

    plain = dataclasses.replace(inference_cfg, postprocess=())
    cases = []
    seen: set[int] = set()
    for ck in dict.fromkeys(Path(c) for c in checkpoints):
        fold = int(load_checkpoint(ck).get("train_cfg", {}).get("fold", 0))
        if fold in seen or not 0 <= fold < dataset.n_folds:
            continue
        seen.add(fold)
        val = [c for c in dataset.val_ids(fold) if c not in dataset.test_ids()]
        for cid, labels in predict([ck], dataset, val, plain):
            cases.append((labels, dataset.source_label(cid), dataset.meta(cid).spacing))
    if not cases:
        names = ", ".join(sorted({s.trick for s in inference_cfg.postprocess if s.select == "validation"}))
        raise SpecError(f"{names}: select = 'validation' needs validation cases, and the models' folds have none "
                        "(a split without validation, e.g. data.folds = 1); use select = 'fixed'")
    steps, lines = choose_steps(inference_cfg.postprocess, cases)
    return dataclasses.replace(inference_cfg, postprocess=steps), lines
