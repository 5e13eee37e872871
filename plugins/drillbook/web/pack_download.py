"""The evidence pack as a download from the pages: ``GET /pack``.

Rules this module enforces:
- ``GET /pack`` streams the evidence pack of one control and period, built by the same
  ``drillbook.evidence.pack.build_pack`` as ``drillbook evidence pack`` (read-only: a SELECT
  role is enough) into a private temporary directory that is removed once the answer is sent;
  the control id reaches the ``Content-Disposition`` filename only as ``[A-Za-z0-9._-]``;
  a build takes a slot of ``drillbook.web.pack_gate`` (one per user, two in all per process by
  default): over the limit the answer is 429 with ``Retry-After``, at once, with nothing built.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.background import BackgroundTask

from drillbook.errors import ConfigurationError
from drillbook.evidence import render_pages as pages
from drillbook.web.pack_gate import PackBusy, PackGate, Slot, user_key
from drillbook.web.period import window

PACK_MAX_DAYS = 400  # a pack covers at most this many days (a year's audit period and some slack)
PACK_CONTROL_MAX = 200
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def pack_filename(control: str, since: str, until: str) -> str:
    """``drillbook-<control>-<since>-<until>.zip`` with anything but ``[A-Za-z0-9._-]`` turned into ``_``."""
    parts = [_UNSAFE_FILENAME.sub("_", p).strip("._") or "_" for p in (control, since, until)]
    return "drillbook-{}-{}-{}.zip".format(*parts)


def _pack_control(control: str | None) -> str:
    text = (control or "").strip()
    if not text:
        raise ConfigurationError("control is required: the pack is of one control id, e.g. control=SOC2:A1.2")
    from drillbook.catalogue.common import validate_control

    if len(text) > PACK_CONTROL_MAX:
        raise ConfigurationError(
            f"control must be a control id of at most {PACK_CONTROL_MAX} characters; "
            f"got {len(text)} characters"
        )
    try:
        return validate_control(
            text
        )  # the catalogue's own rule: no quote, space or control character gets through
    except ValueError as exc:
        raise ConfigurationError(f"control: {exc}") from None


def pack_note(settings: Any) -> str:
    """What the pages say next to a download link: whether the pack will be signed."""
    if settings.private_key:
        return "Packs downloaded here are signed with the checkpoint key."
    return (
        "Packs downloaded here are UNSIGNED: no checkpoint key is configured (DRILLBOOK_CHECKPOINT_KEY or the "
        "drillbook_checkpoint_key connection), so verify will not accept them as authentic."
    )


def pack_signing(pack_settings: Callable[[], Any] | None) -> Any:
    if pack_settings is not None:
        return pack_settings()
    from drillbook.ledger.checkpoint import CheckpointSettings

    return CheckpointSettings()  # no key given by the entry point: the pack is built UNSIGNED and says so


def history_pack_note(control: str | None, catalogue: Any, pack_settings: Callable[[], Any] | None) -> str:
    """History offers a pack download when a control is filtered and the pages have a catalogue to build it."""
    return pack_note(pack_signing(pack_settings)) if control and catalogue is not None else ""


class _PackResponse(FileResponse):
    """The pack as a download; its private directory goes afterwards (the BackgroundTask), and also when
    the client hangs up mid-download (Starlette skips the background task when sending raises). The
    build's slot (``pack_gate``) is given back only then: streaming a large zip is part of the cost."""

    slot: Slot | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            shutil.rmtree(Path(self.path).parent, ignore_errors=True)
            if self.slot is not None:
                self.slot.release()


def pack_response(
    dsn_provider: Callable[[], str],
    catalogue: Callable[[], Any] | None,
    *,
    control: str,
    period: tuple[datetime, datetime, str, str],
    settings: Any,
    base: str,
) -> FileResponse | HTMLResponse:
    """Build the pack with ``build_pack`` (as the CLI does) in a private temp dir; stream it, then remove the dir."""
    from drillbook.evidence.pack import build_pack
    from drillbook.ledger.store import Ledger
    from drillbook.resources.pg import parse

    start, end, since_s, until_s = period
    if end - start > timedelta(days=PACK_MAX_DAYS):
        raise ConfigurationError(
            f"the period {since_s} → {until_s} is {(end - start).days} days; a pack covers at "
            f"most {PACK_MAX_DAYS} days, download one per part of the period"
        )
    cat = catalogue() if catalogue is not None else None
    if cat is None:
        return HTMLResponse(
            pages.error_page(
                "No catalogue",
                "no catalogue is configured (DRILLBOOK_CATALOGUE): the "
                "pack needs the catalogue's schedules to list every expected occurrence",
                base=base,
            ),
            status_code=503,
        )
    dsn = dsn_provider()
    parse(dsn)  # registers the password with redact before any message can carry it
    workdir = Path(tempfile.mkdtemp(prefix="drillbook-pack-"))  # mode 0700: nobody else on the host reads it
    try:
        output = workdir / "pack.zip"
        with Ledger(dsn, spool=None) as ledger:
            result, _report = build_pack(
                ledger, cat, control=control, start=start, end=end, output=output, settings=settings
            )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    disposition = f'attachment; filename="{pack_filename(control, since_s, until_s)}"'
    return _PackResponse(
        output,
        media_type="application/zip",
        headers={
            "Content-Disposition": disposition,
            "Cache-Control": "no-store",
            "X-Drillbook-Pack-Signed": "true" if result.signed else "false",
        },
        background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True),
    )


def add_pack_route(
    app: Any,
    dsn_provider: Callable[[], str],
    catalogue: Callable[[], Any] | None,
    pack_settings: Callable[[], Any] | None,
    *,
    user_dependency: Callable[..., Any],
    gate: PackGate,
) -> None:
    current_user = Depends(user_dependency)  # the app's own dependency: FastAPI calls it once per request

    @app.get("/pack", response_model=None)
    def pack(
        request: Request,
        control: str | None = None,
        since: str | None = None,
        until: str | None = None,
        user: Any = current_user,
    ) -> FileResponse | HTMLResponse:
        chosen = _pack_control(control)
        period = window(since, until, days=31)
        base = str(request.scope.get("root_path", "")).rstrip("/")
        try:
            slot = gate.acquire(user_key(user))
        except PackBusy as busy:
            return HTMLResponse(
                pages.error_page("Busy", busy.reason, base=base),
                status_code=429,
                headers={"Retry-After": str(busy.retry_after), "Cache-Control": "no-store"},
            )
        try:
            answer = pack_response(
                dsn_provider,
                catalogue,
                control=chosen,
                period=period,
                settings=pack_signing(pack_settings),
                base=base,
            )
        except BaseException:
            slot.release()
            raise
        if isinstance(answer, _PackResponse):
            answer.slot = slot  # released once the zip is sent or the client is gone
        else:
            slot.release()
        return answer
