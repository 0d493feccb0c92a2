import sys

from dlcourse_culler.service import main

sys.exit(main())
