"""The data and model sections of the tiny specs that runner tests train end to end (8 synthetic 32^3 cases,
2 test cases, a depth-2 width-4 U-Net); each test adds its own header and ``[train]`` section."""

TINY_DATA_MODEL = """[data]
path = "synthetic"
folds = 3
test_fraction = 0.25
test_cases = 2
[data.synthetic]
cases = 8
shape = [32, 32, 32]
[model]
depth = 2
width = 4
"""

EVALUATION_SPEC = """
name = "{name}"
design = "full"
fixed = []
factors = ["patch_fusion"]
folds = [0]
seeds = [0]
{evaluation}
""" + TINY_DATA_MODEL + """[train]
iterations = 4
epoch_length = 2
patch = 16
batch = 1
num_workers = 0
threads = 1
"""


def evaluation_spec_text(name: str, evaluation: str = "") -> str:
    """A tiny one-factor grid with an ``[evaluation]`` section (the runs that store later years' metrics)."""
    return EVALUATION_SPEC.format(name=name, evaluation=evaluation)
