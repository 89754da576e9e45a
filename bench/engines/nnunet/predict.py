"""Predictions with nnU-Net's predictor (sliding window, tile step, mirroring; several checkpoints: the fold
ensemble), written back in the source geometry and BraTS-2019 labels for bench's own evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.engines._base import ProgressFn
from bench.engines.nnunet import _nn

__all__ = ["predict", "device_of"]


def device_of(device: str | None) -> Any:
    """torch device for ``device`` ("auto"/None: CUDA when available). A CUDA device on a machine without
    CUDA is an error, never a silent CPU run."""
    import torch

    from bench.errors import SpecError

    dev = device or "auto"
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError(f"--device {dev}: CUDA is not available on this machine (use --device cpu)")
    return torch.device(dev)


def predict(checkpoints: list[Path], data: Any, case_ids: list[str], trainer_cls: type[Any], dataset_json: dict,
            settings: dict[str, Any], *, device: str | None = None,
            progress: ProgressFn | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(case_id, labels)``: uint8 BraTS-2019 labels on the case's source grid. ``dataset_json`` is the
    one the trainer trained with (four classes, or regions); either decodes to nnU-Net's BraTS labels 0..3."""
    import torch
    from nnunetv2.imageio.nibabel_reader_writer import NibabelIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from bench.engines.nnunet.data import from_nnunet_labels
    from bench.errors import DataError

    dev = device_of(device)
    params, axes, plans, configuration = [], None, None, data.configuration
    for ckpt in checkpoints:
        params.append(_weights(Path(ckpt), torch))
        state = torch.load(str(ckpt), map_location="cpu", weights_only=False)
        axes = state.get("inference_allowed_mirroring_axes", axes)
        # the model's own plans (spacing, patch, normalisation), not those of the folder being predicted: a
        # model planned on other data predicts at its own scale (a fused set must agree)
        init = state.get("init_args") or {}
        if isinstance(init.get("plans"), dict):
            own = (init["plans"], str(init.get("configuration", configuration)))
            if plans is not None and (own[0]["configurations"].get(own[1]) != plans["configurations"].get(
                    configuration) or own[1] != configuration):
                from bench.errors import CheckpointError

                raise CheckpointError(f"checkpoint {ckpt}: planned otherwise than {checkpoints[0]} (spacing, patch "
                                      "or normalisation differ); fused models must share their plans")
            plans, configuration = own
    plans_manager = PlansManager(plans if plans is not None else data.plans())
    config = plans_manager.get_configuration(configuration)
    label_manager = plans_manager.get_label_manager(dataset_json)
    network = trainer_cls.build_network_architecture(
        plans_manager, config, determine_num_input_channels(plans_manager, config, dataset_json),
        label_manager.num_segmentation_heads, False)
    for ckpt, weights in zip(checkpoints, params):
        try:
            network.load_state_dict(weights)
        except RuntimeError as exc:
            from bench.errors import CheckpointError

            first = str(exc).strip().splitlines()[-1].strip()
            raise CheckpointError(f"checkpoint {ckpt}: trained with other plans or other training tricks than "
                                  f"this prediction's (the network does not take its weights: {first})") from None
    log_file = Path(checkpoints[0]).parent / "predict.log"
    with _nn.quiet(log_file):
        predictor = nnUNetPredictor(tile_step_size=float(settings.get("tile_step_size", 0.5)),
                                    use_gaussian=bool(settings.get("use_gaussian", True)),
                                    use_mirroring=bool(settings.get("use_mirroring", True)),
                                    perform_everything_on_device=dev.type == "cuda", device=dev, verbose=False,
                                    verbose_preprocessing=False, allow_tqdm=False)
        predictor.manual_initialization(network.to(dev), plans_manager, config, params, dataset_json,
                                        trainer_cls.__name__, axes)
    reader = NibabelIO()
    for n, cid in enumerate(case_ids):
        with _nn.quiet(log_file):
            image, props = reader.read_images(data.image_files(cid))
            seg = predictor.predict_single_npy_array(image, {"spacing": props["spacing"]})
        labels = from_nnunet_labels(np.asarray(seg).transpose(2, 1, 0))  # nnU-Net's (z, y, x) -> bench's (x, y, z)
        shape = tuple(data.meta(cid).source_shape)
        if labels.shape != shape:
            raise DataError(f"nnU-Net predicted case {cid} on a {labels.shape} grid; its source grid is {shape}")
        if progress is not None:
            progress({"case": cid, "done": n + 1, "total": len(case_ids)})
        yield cid, np.ascontiguousarray(labels)


def _weights(path: Path, torch: Any) -> dict:
    """The network weights of an nnU-Net checkpoint; one line naming the file for anything else (a bench native
    checkpoint, a corrupt file)."""
    from bench.errors import CheckpointError

    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: one line, no traceback
        raise CheckpointError(f"checkpoint {path}: cannot be read ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "network_weights" not in state:
        hint = " (a bench native checkpoint: predict it without --engine)" if isinstance(state, dict) and \
            "format" in state else ""
        raise CheckpointError(f"checkpoint {path}: not an nnU-Net checkpoint (no network_weights){hint}")
    return state["network_weights"]
