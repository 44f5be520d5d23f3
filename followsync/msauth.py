"""Signing in to Microsoft (Entra ID: work, school and personal accounts) and keeping the
tokens, for a `microsoft` target (Graph) and an `auth: microsoft` mailbox (IMAP XOAUTH2).

README, "Microsoft 365 and Outlook.com". The user registers their own public client
(`client_id:`); `followsync auth NAME` runs the device-code flow. One refresh token serves
both resources, but each resource gets its own access token (Microsoft issues one resource per
token). The access tokens are cached in a 0600 file in the state folder so that a no-op sync
makes no token request. No token or code is ever logged or shown.

SKELETON: the interface the target and the mailbox use; sign-in and refresh are still to be
written (issue 19).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from followsync.errors import TargetError

if TYPE_CHECKING:
    from followsync.config import MailConfig, Target

MICROSOFT_LOGIN = "https://login.microsoftonline.com"
MICROSOFT_GRAPH = "https://graph.microsoft.com"
GRAPH_SCOPES = ["Calendars.ReadWrite"]
IMAP_SCOPES = ["https://outlook.office.com/IMAP.AccessAsUser.All"]
Resource = Literal["graph", "imap"]


@dataclass(frozen=True)
class MicrosoftSettings:
    """What a Microsoft sign-in needs (from a target's or a mailbox's config entry)."""

    name: str
    client_id: str
    state_dir: Path
    tenant: str = "common"
    endpoint: str | None = None
    verify: bool | str = True
    timeout: float = 30.0
    calendar: str | None = None  # a target's calendar: its name, or `default`
    zone: str = "UTC"  # the config's zone

    @property
    def authority(self) -> str:
        return f"{(self.endpoint or MICROSOFT_LOGIN).rstrip('/')}/{self.tenant}"

    @property
    def graph_base(self) -> str:
        return f"{(self.endpoint or MICROSOFT_GRAPH).rstrip('/')}/v1.0/"


def settings_for(entry: Target | MailConfig) -> MicrosoftSettings:
    """A target's or a mailbox's sign-in settings."""
    if entry.client_id is None or entry.state_dir is None:
        raise TargetError(f"{entry.who}: no client_id",
                          "add `client_id:` (README, \"Microsoft 365 and Outlook.com\")")
    calendar = getattr(entry, "calendar", None)
    zone = getattr(entry, "zone", "UTC")
    return MicrosoftSettings(name=entry.name, client_id=entry.client_id,
                             state_dir=entry.state_dir, tenant=entry.tenant,
                             endpoint=entry.endpoint, verify=entry.verify,
                             timeout=entry.timeout, calendar=calendar, zone=zone)


def auth_command(name: str) -> str:
    return f"followsync auth {name}"


class Tokens:
    """The access tokens of one sign-in for one resource (`backends.apisession.Bearer`)."""

    def __init__(self, settings: MicrosoftSettings, resource: Resource,
                 readonly: bool = False) -> None:
        self.settings, self.resource, self.readonly = settings, resource, readonly

    def access(self) -> str:
        """The cached access token, else a refreshed one."""
        return self.refresh()

    def refresh(self) -> str:
        """A new access token from the refresh token; TargetError (exit 3) when there is
        none or Microsoft refuses it."""
        raise TargetError(f"{self.settings.name}: not signed in to Microsoft",
                          f"run `{auth_command(self.settings.name)}`")
