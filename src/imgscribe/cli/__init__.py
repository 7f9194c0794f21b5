"""The ``imgscribe`` command. Errors map to exit codes here and nowhere else.

Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted. One clear line on stderr; a
traceback only with ``--debug``.
"""

from __future__ import annotations

import sys
import traceback
import warnings

import typer

try:  # typer >= 0.29 carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import ClickException

from ..errors import ImgscribeError
from .app import app

def _register() -> None:
    from . import convert, create, describe, eval, models, pull, recommend, run, server_cmds  # noqa: F401, A004
    # (each adds its commands to `app`)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if not debug:  # Pillow warns as it reads a photo's broken EXIF ('Corrupt EXIF data', 'Tag data
        # larger than file'); the image is read anyway, and stderr keeps to imgscribe's own lines
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")
    _register()
    try:
        result = app(args=argv, prog_name="imgscribe", standalone_mode=False)
        if result == 130:  # typer turns Ctrl-C into this exit code, silently
            print("\nInterrupted.", file=sys.stderr)
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except ClickException as exc:  # usage errors: exit 2
        exc.show()
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("\nInterrupted.", file=sys.stderr)
        return 130
    except ImgscribeError as exc:
        _fail(str(exc), debug)
        return getattr(exc, "exit_code", 1)  # 2 for a setting with a bad value (ConfigError)
    except Exception as exc:  # a bug: say so plainly, keep the traceback for --debug
        _fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)", debug)
        return 1


def _fail(message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    print(f"Error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
