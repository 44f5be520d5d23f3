"""A project syncing to one real CalDAV calendar through the fault proxy (which counts and
breaks requests): what the CalDAV sync tests share."""

from __future__ import annotations

import re
from pathlib import Path

from tests.faultproxy import FaultProxy
from tests.project import Project, caldav_target
from tests.servers import CalendarInfo

NOW = "2026-11-12T10:00"


PASSWORD_ENV = "FOLLOWSYNC_TEST_DAV_PASSWORD"


LEADS = """\
version: 1
defaults:
  cadence: [2w, 1mo]
  at: "09:30"
leads:
{leads}
"""


def lead_block(lead_id: str, day: int = 1, note: str = "sent a note") -> str:
    return (f"  {lead_id}:\n    name: Person {lead_id}\n    org: Org {lead_id}\n"
            f"    log:\n      - 2026-11-{day:02d} {note}\n")


FOREIGN = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Someone else//EN\r
BEGIN:VEVENT\r
UID:dentist-appointment-1\r
DTSTAMP:20261101T120000Z\r
DTSTART:20261203T140000Z\r
DTEND:20261203T150000Z\r
SUMMARY:Dentist\r
END:VEVENT\r
END:VCALENDAR\r
"""


class DavProject(Project):
    """The shared project syncing to one calendar through the proxy."""

    def __init__(self, tmp: Path, cal: CalendarInfo, proxy: FaultProxy, as_: str = "event",
                 max_deletes: int = 20) -> None:
        super().__init__(tmp, NOW)
        self.tmp, self.cal, self.proxy = tmp, cal, proxy
        target = caldav_target(proxy.url_for(cal.url), calendar=cal.calendar_name, as_=as_,
                               username=cal.username or "",
                               password_env=PASSWORD_ENV if cal.username else "")
        self.write_config(targets=target, extra=f"safety: {{max_deletes: {max_deletes}}}\n",
                          mode=0o600)

    def write_leads_of(self, *blocks: str) -> None:
        self.write_leads(LEADS.format(leads="".join(blocks)))

    def sync(self, *options: str, now: str = NOW) -> tuple[int, str]:
        return self.output("sync", *options, now=now)

    def ours(self) -> dict[str, bytes]:
        """UID → item text of every item carrying followsync's mark, straight from the server."""
        found: dict[str, bytes] = {}
        for href in self.cal.hrefs():
            status, body, _ = self.cal.get_raw(href)
            assert status == 200
            if b"X-FOLLOWSYNC-LEAD" in body:
                uid = re.search(rb"^UID:(.*?)\r?$", body, re.M)
                assert uid, body
                key = uid.group(1).decode()
                assert key not in found, f"duplicate UID {key}"
                found[key] = body
        return found
