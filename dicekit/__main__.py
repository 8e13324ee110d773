import sys

from dicekit.cli import main

sys.exit(main())
