"""Statistics on per-case results: variance components, effects, intervals, tests, stopping rules.

numpy/scipy (and pandas DataFrames in, plain arrays and dataclasses out). Used by the runner while it runs
(adaptive designs decide at each look) and by the report, which only renders what this package computes.
"""
