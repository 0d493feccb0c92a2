from dlcourse_installer.cli import main

raise SystemExit(main())
