"""What `bark-serve` and `bark-worker` do when their configuration cannot work: one line that
names the BARK_ variable, and an exit code that tells a supervisor not to try again."""

from __future__ import annotations

import sys
from typing import Any

from pydantic import ValidationError

from .settings import Settings

# sysexits.h EX_CONFIG: the process can never start with this configuration (a bad model, a
# precision the device lacks). A supervisor restarts any other exit, not this one.
CONFIG_ERROR = 78
# A bad value in the environment or on the command line (argparse's code for bad usage too).
USAGE_ERROR = 2
_SECRET_FIELDS = frozenset({"api_keys"})


def env_name(field: str | None) -> str:
    """The environment variable of a Settings field (or of a pipeline parameter)."""
    return f"BARK_{field.upper()}" if field else "BARK_MODEL"


def settings_or_exit(prog: str, **overrides: Any) -> Settings:
    """Settings(**overrides), or one line per bad value on stderr and exit 2 (no traceback)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else None
            where = env_name(field) if field else "settings"
            given = "" if field in _SECRET_FIELDS or field is None else f" (got {error.get('input')!r})"
            print(f"{prog}: invalid {where}: {error['msg']}{given}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None
