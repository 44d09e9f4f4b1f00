import sys

from diseaseid.cli import main

sys.exit(main())
