"""`python -m rlvr_world ...`, as `torchrun --nproc-per-node N -m rlvr_world run ...` launches it."""

import sys

from .cli import main

sys.exit(main())
