"""``python -m server`` / ``elp-server``: run the app under uvicorn.

Flags are generated from ``Settings`` (``--max-batch-size`` for ``max_batch_size``) and override the
``ELP_*`` environment, which overrides the defaults.
"""

from __future__ import annotations

import argparse
import logging
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from server.settings import Settings


def _flag_type(annotation: Any) -> Any:
    """argparse type for a settings field; None for fields without a CLI flag."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if typing.get_origin(annotation) in (typing.Union, __import__("types").UnionType) else annotation
    if typing.get_origin(base) is typing.Literal:
        return str
    if base in (str, int, float, Path, SecretStr):
        return str if base is SecretStr else base
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elp-server", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for name, field in Settings.model_fields.items():
        help_text = f"{field.description} (env ELP_{name.upper()})"
        if field.annotation is bool:  # --ui-enabled / --no-ui-enabled
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
            continue
        flag_type = _flag_type(field.annotation)
        if flag_type is None:
            continue
        choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is typing.Literal else None
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=flag_type, choices=choices,
                            default=argparse.SUPPRESS, help=help_text)
    return parser


def settings_from_args(argv: Sequence[str] | None = None) -> Settings:
    overrides = vars(build_parser().parse_args(argv))
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    from server.app import create_app
    from server.connection import header_timeout_protocol
    from server.security import bind_refusal

    settings = settings_from_args(argv)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    refusal = bind_refusal(settings)
    if refusal is not None:
        logging.getLogger("server").critical("%s", refusal)
        raise SystemExit(2)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_drain_s) + 5,
        http=header_timeout_protocol(settings.header_timeout_s, settings.max_header_bytes),
        timeout_keep_alive=settings.keep_alive_timeout_s,  # type: ignore[arg-type]  # call_later takes floats
        limit_concurrency=settings.max_connections or None,
        h11_max_incomplete_event_size=settings.max_header_bytes,  # read only where h11 is the fallback
        ws="websockets-sansio",  # live streams: the websockets package's current protocol (not its deprecated legacy)
        ws_max_size=settings.stream_max_frame_bytes,  # a larger message is refused before it is buffered
    )


if __name__ == "__main__":
    main()
