"""model_fusion: average of the fold models' probabilities; it trains nothing its twin did not."""

from __future__ import annotations

import torch

from bench.engine.api import training_key
from bench.engine.config import ModelConfig, TrainConfig
from tricks import get, resolve
from tricks.model_fusion import average_probabilities


def test_equals_manual_average() -> None:
    g = torch.Generator().manual_seed(0)
    probs = [torch.softmax(torch.randn(4, 5, 6, 7, generator=g), 0) for _ in range(5)]
    fused = average_probabilities(probs)
    manual = (probs[0] + probs[1] + probs[2] + probs[3] + probs[4]) / 5
    assert torch.allclose(fused, manual, atol=1e-7)
    assert torch.allclose(fused.sum(0), torch.ones(5, 6, 7), atol=1e-6)  # still a probability map
    assert torch.equal(average_probabilities(probs[:1]), probs[0])


def test_needs_all_folds_and_shares_every_training_key_with_its_twin() -> None:
    assert get("model_fusion").phase == "inference"
    mcfg = ModelConfig(width=4, depth=2)
    for base in ([], ["warmup", "focal_loss"], ["dense_blocks", "self_ensemble", "patch_fusion"]):
        twin, cell = resolve(base), resolve([*base, "model_fusion"])
        for n_folds in (3, 5):
            for fold in range(n_folds):
                assert twin.folds_for(fold, n_folds) == [fold]
                assert cell.folds_for(fold, n_folds) == list(range(n_folds))
        # every training the fused cell needs is the twin's training of that fold: same key
        for fold in range(5):
            tcfg = TrainConfig(fold=fold, iterations=3)
            assert training_key("fp", mcfg, tcfg, cell) == training_key("fp", mcfg, tcfg, twin)
    # a training-phase trick does change the key (so the equality above can fail)
    assert training_key("fp", mcfg, TrainConfig(), resolve(["hard_mining"])) != training_key(
        "fp", mcfg, TrainConfig(), resolve([])
    )


def test_engine_fusion_of_k_fold_models_equals_manual_average() -> None:
    """What a fused cell's prediction runs: the engine's predictor over the k fold models."""
    import numpy as np

    from bench.engine.config import InferenceConfig
    from bench.engine.infer import predict_probabilities
    from bench.engine.model import build_model

    models = []
    for seed in range(3):  # k = 3 "fold models"
        torch.manual_seed(seed)
        models.append(build_model(ModelConfig(width=4, depth=2)).eval())
    image = np.random.default_rng(0).random((4, 20, 16, 12)).astype(np.float32)
    cfg = resolve(["model_fusion"]).inference_config(InferenceConfig(window=8, device="cpu"))
    assert cfg.overlap == 0.0  # model fusion alone changes no window setting
    device = torch.device("cpu")
    single = [predict_probabilities([m], image, 8, cfg, device) for m in models]
    fused = predict_probabilities(models, image, 8, cfg, device)
    assert torch.allclose(fused, average_probabilities(single), atol=1e-6)
    assert not torch.allclose(fused, single[0], atol=1e-3)  # the models differ: averaging changes the output
