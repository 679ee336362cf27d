"""`python -m stream_r1` runs the command line (also under torchrun)."""

import sys

from .cli import main

sys.exit(main())
