"""The ``flipbench`` command line.

Each sub-command lives in its own module under ``benchmark.commands`` and is imported only when invoked, so
``flipbench --help`` stays fast and a command's heavy dependencies (torch, bpy, ...) load only when needed.
"""

from __future__ import annotations

import importlib

import click

from benchmark import __version__

#: sub-command name -> "module:click_object"
COMMANDS: dict[str, str] = {
    "quickstart": "benchmark.commands.quickstart:quickstart",
    "eval": "benchmark.commands.eval_cmd:eval_cmd",
    "inspect": "benchmark.commands.inspect_cmd:inspect_cmd",
    "report": "benchmark.commands.report_cmd:report_cmd",
    "weights": "benchmark.commands.weights_cmd:weights_cmd",
    "bench": "benchmark.commands.bench_cmd:bench_cmd",
    "convert": "benchmark.commands.convert_cmd:convert_cmd",
    "generate": "benchmark.commands.generate_cmd:generate_cmd",
    "view": "benchmark.commands.view_cmd:view_cmd",
    "export": "benchmark.commands.export_cmd:export_cmd",
}

_HELP = {
    "quickstart": "Generate the embedded mini dataset and evaluate the default models on it (offline).",
    "eval": "Run models over a dataset and write per-object records and a summary.",
    "inspect": "Print counts, size distribution and sanity checks of an HDF5 dataset.",
    "report": "Turn evaluation runs into tables, heat maps, timing reports and an HTML page.",
    "weights": "List, download and verify model checkpoints.",
    "bench": "Micro-benchmarks (sampler, models) that print figures.",
    "convert": "Convert COCO, LVIS, OpenImages V7, KITTI-360 or Hypersim to the FLIP HDF5 format.",
    "generate": "Render ObjaScale images with Blender into HDF5 shards.",
    "view": "Browse runs' objects and masks in a local web app (filters, object pages, differences).",
    "export": "Export runs to other tools (FiftyOne).",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context):
        """Run the sub-command; a write the file system refuses (full disk, read-only, no permission) anywhere in
        any command is a one-line error naming the file (``benchmark.commands.errors.user_errors``)."""
        from benchmark.commands.errors import user_errors

        with user_errors():
            return super().invoke(ctx)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="flipbench")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors (or FLIPBENCH_DEBUG=1).")
def main(debug: bool) -> None:  # --debug is read from the context (benchmark.commands.errors.debug_enabled)
    """flipbench: FLIP vs SAM-family benchmark and the ObjaScale dataset generator."""


if __name__ == "__main__":
    main()
