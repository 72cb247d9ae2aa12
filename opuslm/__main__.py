import sys

from opuslm.cli.main import main

sys.exit(main())
