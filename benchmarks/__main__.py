"""``python -m benchmarks ...``: the benchmark command (what ``cryofield bench`` runs)."""

import sys

from .suites import cli

sys.exit(cli())
