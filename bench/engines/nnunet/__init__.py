"""The nnU-Net v2 engine (``pip install -e ".[nnunet]"``). Importable without nnunetv2; the framework is imported
when the engine works. :mod:`bench.engines.nnunet.compose` builds each cell's trainer class from the trick stack."""
