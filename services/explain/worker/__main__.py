from services.explain.worker.main import main

raise SystemExit(main())
