import sys

from tuneops.cli import main

sys.exit(main())
