"""Options every sub-command accepts, declared once."""

from typing import Annotated

import typer

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v",
                                       help="More detail; tracebacks on internal errors.")]
Json = Annotated[bool, typer.Option("--json", help="stdout holds only one JSON object: the "
                                    "command's summary.")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="Replace an output folder of another stage, or one curate did not "
                        "write.")]
