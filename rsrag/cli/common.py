"""What every command shares: the one error wrapper, the one result writer, and common options.

Heavy modules are imported inside the functions, so `rsrag --help` stays fast.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, NoReturn

import typer

ROOT_OPTION = typer.Option(None, "--root", help="Folder or s3://bucket/prefix holding the indexes (default: $RSRAG_INDEXES or ./indexes).")
LIBRARY_OPTION = typer.Option(..., "--index", "-i", help="Library (index) name.")


def fail(exc: BaseException | str, code: int = 2) -> NoReturn:
    """Print `error: ...` as one red line on stderr and exit with `code` (no traceback)."""
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code) from None


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can act on into one red line and exit status 2 (no traceback).

    That is every error rsrag raises on purpose (a missing, busy or badly named index, a bad filter,
    an encoder mismatch, an unreadable image, a generator that cannot answer), a bad value
    (`ValueError`) and what the operating system refuses (`OSError`: a missing file, a name too long,
    no permission). Anything else is a bug and keeps its traceback.
    """
    from rsrag.generators import GeneratorError
    from rsrag.imageio import ImageLoadError
    from rsrag.index.errors import LibraryError

    try:
        yield
    except (LibraryError, GeneratorError, ImageLoadError, ValueError, OSError) as exc:
        fail(exc)


def slug(text: str) -> str:
    """Safe file-name part: encoder names may hold '/' or ':' (e.g. hub ids)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def write_result(result: dict, output: Path | None, default_name: str) -> Path:
    """Write a command's JSON result to `output`, else to `<results dir>/default_name`; return the path."""
    from rsrag.config import results_dir

    path = output if output is not None else results_dir() / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return path


def report(result: dict, output: Path | None, default_name: str, as_json: bool,
           print_table: Callable[[dict], None]) -> Path:
    """The end of every evaluation command: write the JSON result file, print the result (as JSON
    or with `print_table`), then say on stderr where the file is."""
    path = write_result(result, output, default_name)
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print_table(result)
    typer.echo(f"wrote {path}", err=True)  # whole, never wrapped: a path to copy
    return path


# where and when (rsrag.geo.filters.Place), for every command that searches
BBOX_OPTION = typer.Option(None, "--bbox", help="min_lon,min_lat,max_lon,max_lat: footprints (or lon/lat points) "
                                                "overlapping it; min_lon > max_lon crosses 180.")
NEAR_OPTION = typer.Option(None, "--near", help="LON,LAT,METRES: within that distance on the ground "
                                                "(search --like ID --near METRES: around that chip).")
WITHIN_OPTION = typer.Option(None, "--within", help="A GeoJSON file: footprints (or points) intersecting it.")
AFTER_OPTION = typer.Option(None, "--after", help="Acquired at or after this time (2020, 2020-06-01, ISO-8601).")
BEFORE_OPTION = typer.Option(None, "--before", help="Acquired at or before this time.")
