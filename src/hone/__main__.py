import sys

from hone.cli import main

sys.exit(main())
