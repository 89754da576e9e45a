"""The experiment spec's model (:mod:`bench.spec.model`) and the small checks its parser and the designs share
(:mod:`bench.spec.checks`). Parsing a spec's TOML is :mod:`bench.runner.spec`'s work."""

from bench.spec.model import DataSpec, EvaluationSpec, FractionalSpec, OptunaSpec, ReplicationSpec, Row, Spec

__all__ = ["Spec", "DataSpec", "OptunaSpec", "EvaluationSpec", "ReplicationSpec", "FractionalSpec", "Row"]
