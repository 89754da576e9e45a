"""The training engine: model, recipe slots, training loop, sliding-window inference, checkpoints.

Entry points: :mod:`bench.engine.api` (``training_key``, ``train``, ``predict``), :mod:`bench.engine.config`
(``ModelConfig``, ``TrainConfig``, ``InferenceConfig``) and :mod:`bench.engine.recipe` (the slots tricks fill).
Imports only numpy, scipy, nibabel and torch (runs on a bare GPU box). Nothing is imported here, so
``import bench.engine.config`` stays light.
"""
