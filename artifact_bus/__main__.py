"`python -m artifact_bus`: the `artifact-bus` command."
from artifact_bus.cli import main

raise SystemExit(main())
