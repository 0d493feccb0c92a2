import sys

from dlcourse_status.service import main

sys.exit(main())
