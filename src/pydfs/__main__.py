from pydfs.cli import main

raise SystemExit(main())
