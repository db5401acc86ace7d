"""``flipbench view RUN ...``: browse the stored masks of evaluation runs in a local web app (benchmark.view)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from benchmark.commands.errors import user_errors

VIEW_INSTALL = 'pip install -e ".[view]"'


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("view")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address exposes the runs' images to the network "
                   "(a warning is printed).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free one).")
@click.option("--allow-mixed-protocols", is_flag=True, help="Show runs of different protocols together, flagged.")
def view_cmd(runs: tuple[Path, ...], host: str, port: int, allow_mixed_protocols: bool) -> None:
    """Browse runs interactively: filter objects by dataset, category, size, IoU, row and prompt, sort by IoU, size
    or the difference of two rows, open an object (full image, zoom and pan, each row's mask, the difference of two
    rows, its figures), per-category and per-size tables. Read-only; pictures are drawn on demand from the datasets
    the runs recorded and the stored masks."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise click.ClickException(f"flipbench view needs the optional view extra ({exc.name} is missing): "
                                   f"{VIEW_INSTALL}") from exc
    from benchmark.report.runs import ReportInputError
    from benchmark.view.app import create_app
    from benchmark.view.index import open_index

    with user_errors(ReportInputError):
        index = open_index(list(runs), allow_mixed=allow_mixed_protocols)
    if not is_loopback(host):
        click.secho(f"warning: listening on {host}: anyone who can reach this machine on port {port} can see these "
                    "runs and their images (use --host 127.0.0.1 to keep them local)", fg="yellow", err=True)
    config = uvicorn.Config(create_app(index), host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    click.echo(f"flipbench view: {len(index.objects)} objects, {len(index.labels)} rows from {len(runs)} run(s); "
               f"open http://{host if ':' not in host else f'[{host}]'}:{port}/  (Ctrl-C stops)")
    try:
        server.run()
    finally:
        index.close()
