"""One cheap fingerprint of what the web UI shows, for its live updates."""

from __future__ import annotations


def fingerprint_thd(cur) -> str:
    """Changes whenever a VM host, machine or boot resource is added, changed or removed, or an
    event is recorded: counts catch deletions, max(updated) catches changes."""
    cur.execute(
        "SELECT (SELECT coalesce(max(id), 0) FROM events),"
        " (SELECT count(*) || '/' || coalesce(max(updated)::text, '') FROM vm_hosts),"
        " (SELECT count(*) || '/' || coalesce(max(updated)::text, '') FROM machines),"
        " (SELECT count(*) || '/' || coalesce(max(updated)::text, '') FROM boot_resources)"
    )
    return "|".join(str(v) for v in cur.fetchone())
