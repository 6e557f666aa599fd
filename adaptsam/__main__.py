"""``python -m adaptsam`` (what ``torchrun ... -m adaptsam train`` runs)."""

import sys

from adaptsam.cli import main

sys.exit(main())
