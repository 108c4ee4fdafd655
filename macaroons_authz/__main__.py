"""``python -m macaroons_authz``."""

import sys

from .cli import main

sys.exit(main())
