"""``python -m cryofield``: the command line (:mod:`cryofield.cli`)."""

import sys

from cryofield.cli import main

sys.exit(main())
