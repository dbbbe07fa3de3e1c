from quantgate.report.render import main

raise SystemExit(main())
