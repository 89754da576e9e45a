"""The data layer: formats and readers, writers, synthetic phantoms, checks, the prepared cache, pictures.

Modules (import the one you need; this package imports nothing heavy on its own):

- ``formats``: label conventions, regions, the canonical ``Case``.
- ``readers``: ``detect_format``, ``list_cases``, ``read_case``, ``read_label``, ``load_nifti``.
- ``writers``: ``write_prediction`` (BraTS submission naming, source geometry and labels), ``write_nifti``.
- ``synth``: ``synthesize`` (the embedded default dataset), ``make_phantom``.
- ``check``: ``check_dataset`` behind ``bench data check``.
- ``prepare``: ``prepare`` / ``PreparedDataset`` (cropped, normalised, memory-mapped cache with splits).
- ``show``: ``show_case`` behind ``bench data show``.
"""
