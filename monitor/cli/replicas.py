"""``kmon replicas``: the daemons sharing this database and what each holds."""

from __future__ import annotations

import click

from monitor.cli.common import State, format_option, query
from monitor.cli.output import Format, render
from monitor.timefmt import kst, kst_iso, utcnow


@click.group()
def replicas() -> None:
    """The `kmon run` processes on this database (several on PostgreSQL)."""


@replicas.command("list")
@format_option
@click.pass_obj
def replicas_list(state: State, fmt: Format) -> None:
    """Each replica: host, pid, start, last heartbeat and the leases it holds now.

    A replica is alive while its heartbeat is younger than the lease
    (`replicas.lease`); one that stopped cleanly says when.
    """
    from monitor.db import leases

    rows = query(state, lambda session: leases.list_replicas(session, now=utcnow()))
    lease = state.settings.replicas.lease

    def status(view: leases.ReplicaView) -> str:
        if view.stopped_at is not None:
            return "stopped"
        return "alive" if view.silent_for < lease else "silent"

    full = [
        {
            "id": r.id,
            "host": r.host,
            "pid": r.pid,
            "version": r.version,
            "status": status(r),
            "alive": status(r) == "alive",
            "started_at": kst_iso(r.started_at),
            "heartbeat_at": kst_iso(r.heartbeat_at),
            "stopped_at": kst_iso(r.stopped_at),
            "silent_for": round(r.silent_for, 1),
            "sources": r.sources,
            "tasks": r.tasks,
        }
        for r in rows
    ]
    table = [
        {
            "replica": r.id,
            "host": r.host,
            "pid": r.pid,
            "status": status(r),
            "started (KST)": kst(r.started_at),
            "heartbeat": f"{r.silent_for:.0f}s ago",
            "sources": r.sources,
            "tasks": ", ".join(r.tasks),
        }
        for r in rows
    ]
    if not rows and fmt == "table":
        click.echo("no replica has run on this database")
        return
    click.echo(render(full, fmt, table_rows=table))
