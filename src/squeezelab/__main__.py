"""``python -m squeezelab`` (also what ``torchrun -m squeezelab train ...`` runs)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
