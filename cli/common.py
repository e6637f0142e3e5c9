"""Options every sub-command accepts, declared once."""

from typing import Annotated

import typer

# metavar "": a flag takes no value, so the help shows no `<bool>` after it.
Quiet = Annotated[bool, typer.Option("--quiet", "-q", metavar="",
                                     help="Only errors on stderr.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", metavar="",
                                       help="More detail; tracebacks on internal errors.")]
Json = Annotated[bool, typer.Option("--json", metavar="", help="stdout holds only one JSON "
                                    "object: the command's summary (or the error).")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", metavar="", help="Replace an output folder of another stage, or one curate "
                                    "did not write.")]
