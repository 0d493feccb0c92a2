import sys

from fakenvml.cli import main

sys.exit(main())
