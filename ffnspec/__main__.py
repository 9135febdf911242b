import sys

from ffnspec.cli import main

sys.exit(main())
