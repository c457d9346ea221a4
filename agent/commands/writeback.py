"""``siem-agent alerts update`` and ``incidents update``: one write to Graph, from the command line.

The write goes through the source's credential, proxy and CA bundle like polling does, with the same
delivery rules as the API's worker (``agent.writeback.executor``): comment first, then the update;
429 waits for Retry-After (at most ``MAX_THROTTLED`` times), 5xx/timeouts are retried with the
source's backoff up to its ``max_attempts``, and an attempt whose outcome is unknown is checked
against Graph before it is sent again, so a comment is not added twice. This process is not the
running agent, so it spends its own copy of the source's ``requests_per_minute`` (for one or two
requests). The version Graph reports is appended to the agent's versions file, so a running agent
marks (or holds back) it like the API's writes; when the state directory is not writable the write
still happens and a warning says the version cannot be marked.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.clock import Clock, now_str
from agent.config import AgentSettings
from agent.errors import StateError
from agent.metrics import AgentMetrics
from agent.sources import Entity, GraphError, open_writes
from agent.writeback.executor import Executor, GaveUp, MemoryLog, RetryPolicy
from agent.writeback.queue import WriteRequest
from agent.writeback.updates import (
    ALERT_STATUS,
    CLASSIFICATION,
    DETERMINATION,
    INCIDENT_STATUS,
    Update,
    UpdateError,
    check_target,
)
from agent.writeback.versions import OwnVersions, versions_path

log = logging.getLogger(__name__)

CLI_ACTOR = "cli"


class _BestEffortVersions(OwnVersions):
    """Records versions when it can; a state directory the CLI may not write is a warning, not a failure."""

    unrecorded = False

    def add(self, source: str, entity: str, target: str, version: str, request_id: str, by: str) -> None:
        try:
            super().add(source, entity, target, version, request_id, by)
        except StateError as exc:
            self.unrecorded = True
            log.warning("Cannot record the new version for loop control.", extra={"error": str(exc)})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened: the request (steps and versions), Graph's refusal, or why it was given up."""

    request: WriteRequest
    refused: GraphError | None = None
    gave_up: str | None = None
    unrecorded: bool = False

    @property
    def ok(self) -> bool:
        return self.refused is None and self.gave_up is None

    def line(self) -> str:
        """The one line the command prints."""
        req = self.request
        what = f"{req.entity} {req.target} (source {req.source})"
        done = [s for s in ("comment", "update") if req.steps.get(s) == "sent"]
        if self.ok:
            changes = Update(dict(req.changes)).describe()
            parts = ([f"updated: {changes}"] if changes else []) + (["comment added"] if req.comment else [])
            version = f"; lastUpdateDateTime {req.versions[-1]}" if req.versions else ""
            note = "; not marked for loop control (state directory not writable)" if self.unrecorded else ""
            return f"{what}: " + ", ".join(parts) + version + note
        applied = f" (already applied: {', '.join(done)})" if done else ""
        reason = self.refused.describe() if self.refused is not None else f"not delivered: {self.gave_up}"
        return f"error: {what}: {reason}{applied}"


def add_update_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``alerts update`` and ``incidents update``."""
    for entity, plural, status in (
        ("alert", "alerts", ALERT_STATUS),
        ("incident", "incidents", INCIDENT_STATUS),
    ):
        _update_parser(sub, entity, plural, status)


def _update_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    entity: str,
    plural: str,
    status: tuple[str, ...],
) -> None:
    group = sub.add_parser(
        plural, help=f"write to {plural} in Microsoft Defender", description=f"Act on {plural} through Graph."
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser(
        "update",
        help=f"update one {entity} (and/or add a comment)",
        description=f"Update one {entity} in Microsoft Defender through the source's Graph app "
        f"(needs Security{entity.title()}.ReadWrite.All). Prints one line; exit 0 when Graph applied it, "
        "1 when Graph refused it or could not be reached, 2 for bad values.",
    )
    up.add_argument("--config", "-c", type=Path, required=True, help="TOML configuration file")
    up.add_argument("--source", required=True, help="name of the [[sources]] table (tenant and app)")
    up.add_argument("target", metavar=f"{entity.upper()}_ID", help=f"the {entity}'s id")
    up.add_argument("--status", help=f"one of: {', '.join(status)}")
    up.add_argument("--classification", help=f"one of: {', '.join(CLASSIFICATION)}")
    up.add_argument("--determination", help=f"one of: {', '.join(DETERMINATION)}")
    up.add_argument("--assigned-to", metavar="UPN", help="owner (an empty string unassigns)")
    up.add_argument("--comment", metavar="TEXT", help="add this comment")
    if entity == "incident":
        up.add_argument(
            "--custom-tag",
            action="append",
            metavar="TAG",
            help="replace the custom tags with these (repeat for several)",
        )
        up.add_argument("--clear-custom-tags", action="store_true", help="remove every custom tag")


def update_body(args: argparse.Namespace) -> dict[str, object]:
    """The API-style body the command-line options describe (validated by ``parse_update``)."""
    body: dict[str, object] = {}
    for key, value in (
        ("status", args.status),
        ("classification", args.classification),
        ("determination", args.determination),
        ("assignedTo", args.assigned_to),
        ("comment", args.comment),
    ):
        if value is not None:
            body[key] = value
    if getattr(args, "clear_custom_tags", False):
        body["customTags"] = []
    elif getattr(args, "custom_tag", None):
        body["customTags"] = args.custom_tag
    return body


def find_source(settings: AgentSettings, name: str) -> int:
    """Index of the source called ``name``; raises ``UpdateError`` naming the configured ones."""
    for i, src in enumerate(settings.sources):
        if src.name == name:
            return i
    known = ", ".join(s.name for s in settings.sources)
    raise UpdateError(f"no source named {name[:64]!r} in the configuration (sources: {known})")


async def update_once(
    settings: AgentSettings, source: str, entity: Entity, target: str, update: Update, clock: Clock
) -> Outcome:
    """Send ``update`` to ``target`` through ``source``. Raises ``UpdateError`` (bad id or source)."""
    cfg = settings.sources[find_source(settings, source)]
    check_target(target, entity)
    req = WriteRequest.new(source, entity, target, update, CLI_ACTOR, now_str(clock))
    versions = _BestEffortVersions(
        versions_path(settings.state_dir, settings.name), clock, settings.writeback.retention_secs
    )
    policy = RetryPolicy(
        cfg.backoff_base_secs, cfg.backoff_max_secs, max_attempts=cfg.max_attempts, retry_auth=False
    )
    async with open_writes(cfg, clock, AgentMetrics(CollectorRegistry())) as writes:
        executor = Executor(writes, MemoryLog(), clock, versions)
        try:
            refused = await executor.deliver(req, policy)
        except GaveUp as exc:
            return Outcome(req, gave_up=str(exc), unrecorded=versions.unrecorded)
    return Outcome(req, refused=refused, unrecorded=versions.unrecorded)
