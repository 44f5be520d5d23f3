"""The command line (README, "Commands"): one function per command, one error handler for exit codes.

Heavy modules (pydantic, icalendar, caldav) are imported inside the commands that need them,
so `followsync --help` starts fast.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from followsync import __version__
from followsync.errors import EXIT_USAGE, ConfigError, FollowsyncError

if TYPE_CHECKING:
    from followsync.config import Config, MailConfig, Target
    from followsync.leads import LeadBook

log = logging.getLogger("followsync")
EXIT_BUG = 70


@dataclass
class Context:
    config_path: str | None
    now_text: str | None
    verbose: int
    quiet: bool

    def config(self) -> Config:
        """The config, loaded one way for every command: as validated before when nothing
        it depends on changed (a `sync` with nothing to do then needs no pydantic; `plan`
        and `sync` read the same Config: see configcache)."""
        from followsync.config import find_config
        from followsync.configcache import load_config_cached

        path = find_config(self.config_path)
        config = load_config_cached(path)
        for warning in config.warnings:
            log.warning("%s", warning)
        return config

    def now(self, config: Config) -> datetime:
        """--now / $FOLLOWSYNC_NOW, else the clock; naive times are in the config's zone."""
        text = self.now_text or os.environ.get("FOLLOWSYNC_NOW")
        if not text:
            return datetime.now(config.timezone)
        try:
            value = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
        except ValueError:
            raise click.UsageError(f"--now {text!r} is not an ISO date or date-time "
                                   "(e.g. 2027-01-11 or 2027-01-11T08:30)") from None
        from followsync.durations import MAX_YEAR, MIN_YEAR

        if not MIN_YEAR <= value.year <= MAX_YEAR:
            raise click.UsageError(f"--now {text!r} is out of range: followsync takes years "
                                   f"{MIN_YEAR} to {MAX_YEAR}")
        return value if value.tzinfo else value.replace(tzinfo=config.timezone)

    def say(self, text: str) -> None:
        if not self.quiet:
            click.echo(text)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("followsync")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


_CONFIG_HELP = ("Config file (default: $FOLLOWSYNC_CONFIG, else "
                "$XDG_CONFIG_HOME/followsync/config.yaml).")
_NOW_HELP = "Act as if it were then (also $FOLLOWSYNC_NOW)."
_VERBOSE_HELP = "Say more, including debugging detail."
_QUIET_HELP = "Print only errors."


def _after_command(ctx: click.Context, param: click.Parameter, value: object) -> None:
    """A global option given after the command name: it wins over the same one before it."""
    # Not given: these options default to None, 0 and False. (click 8.4 records no source for
    # a parameter that is not exposed, so the value itself tells.)
    if param.name is None or value in (None, 0, False):
        return
    obj = ctx.find_object(Context)
    if obj is None:  # the command was invoked on its own, without the group
        return
    setattr(obj, param.name, value)
    _setup_logging(obj.verbose, obj.quiet)


def _global_params() -> list[click.Parameter]:
    """The global options again, for a command's own option list (`followsync plan -v`)."""
    def option(decls: list[str], help_text: str, **kind: bool | str) -> click.Option:
        return click.Option(decls, help=help_text, expose_value=False, callback=_after_command,
                            **kind)  # type: ignore[arg-type]

    return [
        option(["--config", "config_path"], _CONFIG_HELP, metavar="PATH"),
        option(["--now", "now_text"], _NOW_HELP, metavar="ISO-DATETIME"),
        option(["-v", "--verbose", "verbose"], _VERBOSE_HELP, count=True),
        option(["-q", "--quiet", "quiet"], _QUIET_HELP, is_flag=True),
    ]


class _Group(click.Group):
    """A group whose every command also takes the global options after its name."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.extend(_global_params())
        super().add_command(cmd, name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH", help=_CONFIG_HELP)
@click.option("--now", "now_text", metavar="ISO-DATETIME", help=_NOW_HELP)
@click.option("-v", "--verbose", count=True, help=_VERBOSE_HELP)
@click.option("-q", "--quiet", is_flag=True, help=_QUIET_HELP)
@click.version_option(__version__, prog_name="followsync")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, now_text: str | None, verbose: int,
        quiet: bool) -> None:
    """Keep the next follow-up with everyone you are chasing in your calendar.

    Edit one YAML file of leads; followsync writes each lead's next follow-up, with alarms,
    into a CalDAV calendar, Google Calendar, Outlook (Microsoft 365, Outlook.com) or an .ics
    file, and keeps it right.
    """
    _setup_logging(verbose, quiet)
    ctx.obj = Context(config_path, now_text, verbose, quiet)


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.pass_obj
def init(obj: Context, directory: str | None) -> None:
    """Write a starter config.yaml and leads.yaml (with comments); never overwrite a file.

    Without DIRECTORY they go where the config is looked up (--config, else
    $FOLLOWSYNC_CONFIG, else $XDG_CONFIG_HOME/followsync/config.yaml), so the next command
    finds them.
    """
    from followsync.commands.init import write_starter
    from followsync.config import find_config

    config = Path(directory).expanduser() / "config.yaml" if directory else \
        find_config(obj.config_path)
    looked_up = config.resolve() == find_config(None).resolve()
    for line in write_starter(config, looked_up=looked_up, explicit_dir=directory is not None):
        obj.say(line)


@cli.command()
@click.pass_obj
def validate(obj: Context) -> None:
    """Check the config and lead files; report every problem as FILE:LINE:COL."""
    from followsync.leads import load_leads
    from followsync.state import shortcuts_in

    config = obj.config()
    book = load_leads(list(config.lead_paths), named_at=config.lead_named_at,
                      shortcuts=shortcuts_in(config.state_dir))
    for target in config.targets:
        if target.password_env and target.password_env not in os.environ:
            log.warning("warning: target %r: $%s (password_env) is not set here; the daemon run "
                        "by systemd needs it set in its unit (README, \"Running as a service\")",
                        target.name, target.password_env)
    for box in config.mailboxes:
        if box.password_env and box.password_env not in os.environ:
            log.warning("warning: mailbox %r: $%s (password_env) is not set here; the daemon run "
                        "by systemd needs it set in its unit (README, \"Running as a service\")",
                        box.name, box.password_env)
    files = ", ".join(str(p) for p in config.lead_paths)
    count = len(book.leads)
    obj.say(f"ok: {config.path} and {count} lead{'' if count == 1 else 's'} in {files}")


@cli.command()
@click.option("--all", "show_all", is_flag=True,
              help="Also list every pending follow-up with its reason, not only changes.")
@click.argument("leads", nargs=-1, metavar="[LEAD]...")
@click.pass_obj
def plan(obj: Context, show_all: bool, leads: tuple[str, ...]) -> None:
    """Show what a sync would create, update and delete, and why; write nothing.

    LEAD ids restrict it to those leads."""
    from followsync.commands.show import print_plan
    from followsync.sync import SyncOptions, run

    config = obj.config()
    outcome = run(config, obj.now(config), SyncOptions(dry_run=True))
    known = [lead_plan.lead_id for lead_plan in outcome.plans]
    missing = [lead for lead in leads if lead not in set(known)]
    if missing:
        from followsync.leadedit import unknown_lead

        raise unknown_lead(missing[0], known)
    print_plan(outcome, obj.say, show_all=show_all, leads=tuple(dict.fromkeys(leads)),
               unscanned=_unscanned(config))
    _exit(outcome.exit_code)


def _unscanned(config: Config) -> list[str]:
    """The mailboxes the state has no scan of: `plan` never scans, so their mail is not
    counted in its dates yet (README "Mail"). Nothing is written (no state is created)."""
    if not config.mailboxes:
        return []
    from followsync.state import open_state

    state = open_state(config.state_dir, readonly=True)
    try:
        return [box.name for box in config.mailboxes if state.mail_looked_for(box.key) is None]
    finally:
        state.close()


@cli.command()
@click.option("--force", is_flag=True, help="Go on even past safety.max_deletes.")
@click.option("--target", "only", metavar="NAME", help="Sync only this target.")
@click.pass_obj
def sync(obj: Context, force: bool, only: str | None) -> None:
    """Reconcile every target once, then exit."""
    from followsync.commands.show import Progress, print_outcome
    from followsync.configcache import keep_unkept
    from followsync.sync import SyncOptions, run

    config = obj.config()
    if only and only not in {t.name for t in config.targets}:
        raise click.UsageError(f"no target named {only!r} in {config.path}")
    progress = Progress() if sys.stderr.isatty() and not obj.quiet else None
    try:
        outcome = run(config, obj.now(config),
                      SyncOptions(force=force, only=only, progress=progress))
        keep_unkept(config)  # (a first sync made the state folder: the config's shortcut goes there)
    finally:
        if progress:
            progress.done()
    print_outcome(outcome, obj.say)
    _exit(outcome.exit_code)


@cli.command("run")
@click.pass_obj
def run_daemon(obj: Context) -> None:
    """The daemon: sync now, on every save, every daemon.interval and after each midnight."""
    from followsync.config import find_config
    from followsync.daemon import serve

    if obj.now_text or os.environ.get("FOLLOWSYNC_NOW"):
        raise click.UsageError("--now and $FOLLOWSYNC_NOW do not apply to `run`: the daemon "
                               "follows the real clock (use `sync --now` to try a date)")
    gc.freeze()  # what the imports made lives as long as the process: never scan it again
    _exit(serve(find_config(obj.config_path), verbose=obj.verbose, quiet=obj.quiet))


@cli.command()
@click.argument("lead")
@click.option("--on", "on_text", metavar="DATE",
              help="The touch's date (default: today, with the time now).")
@click.option("--by", type=click.Choice(["me", "them", "both"]), default="me", show_default=True,
              help="me: I reached out; them: they did or replied; both: a call or meeting.")
@click.option("--note", default="", help="What happened, e.g. 'emailed the portfolio'.")
@click.option("--rule", metavar="RULE",
              help="Mark this one pending follow-up done (its X-FOLLOWSYNC-RULE, e.g. "
                   "status-interviewed; `plan`/`agenda --json` name them).")
@click.pass_obj
def done(obj: Context, lead: str, on_text: str | None, by: str, note: str,
         rule: str | None) -> None:
    """Log a touch with LEAD in the lead file, keeping its comments and layout."""
    from followsync.durations import parse_date
    from followsync.leadedit import log_touch, unknown_lead
    from followsync.leads import Touch, load_leads
    from followsync.state import shortcuts_in

    config = obj.config()
    book = load_leads(list(config.lead_paths), named_at=config.lead_named_at,
                      shortcuts=shortcuts_in(config.state_dir))
    if lead not in book.leads:
        raise unknown_lead(lead, sorted(book.leads))
    now = obj.now(config)
    try:
        day = parse_date(on_text) if on_text else config.today(now)
    except ValueError as exc:
        raise click.UsageError(f"--on: {exc}") from None
    at = None
    if on_text is None:  # done now: the time too (a status trigger needs a touch after it)
        from followsync.sync.planning import local_now

        at = local_now(config, now).replace(second=0)
    if rule is not None:
        _pending_rule(config, book, lead, rule, now)
    touch = Touch(date=day, at=at, by=by, note=" ".join(note.split()), rule=rule)
    file = book.leads[lead].file
    entry = log_touch(Path(file), lead, touch)
    obj.say(f"{file}: logged for {lead}: - {entry}")


def _pending_rule(config: Config, book: LeadBook, lead: str, rule: str, now: datetime) -> None:
    """`done --rule`: RULE must name a follow-up of LEAD that is pending now (exit 2)."""
    from followsync.leadedit import unknown_rule
    from followsync.state import open_state
    from followsync.sync.planning import local_now, mail_touches, make_plans

    state = open_state(config.state_dir, readonly=True)
    try:
        plans, _ = make_plans(book, config.today(now), state.memories(),
                              mail_touches(config, state, book), local_now(config, now))
    finally:
        state.close()
    pending = [f.rule for p in plans if p.lead_id == lead for f in p.follow_ups]
    if rule not in pending:
        raise unknown_rule(lead, rule, pending)


@cli.command()
@click.option("--days", default=14, show_default=True, type=click.IntRange(0, 36500),
              help="How far ahead to look.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see README).")
@click.option("--mail", "all_mail", is_flag=True,
              help="List every mail of the last 30 days (else the latest per lead).")
@click.pass_obj
def agenda(obj: Context, days: int, as_json: bool, all_mail: bool) -> None:
    """Upcoming and overdue follow-ups, and the leads gone cold."""
    import json

    from followsync import agenda as ag
    from followsync.leads import load_leads
    from followsync.state import open_state, shortcuts_in
    from followsync.sync.planning import local_now, mail_touches, make_plans

    config = obj.config()
    book = load_leads(list(config.lead_paths), named_at=config.lead_named_at,
                      shortcuts=shortcuts_in(config.state_dir))
    now = obj.now(config)
    today = config.today(now)
    state = open_state(config.state_dir, readonly=True)
    try:
        plans, _ = make_plans(book, today, state.memories(), mail_touches(config, state, book),
                              local_now(config, now))
        moves, laid = state.moves(), state.laid()
    finally:
        state.close()
    result = ag.build(plans, today, days, moves, laid)
    if as_json:
        click.echo(json.dumps(ag.to_json(result), indent=2, ensure_ascii=False))
    else:
        obj.say(ag.to_text(result, all_mail))


@cli.command("mail")
@click.option("--since", "since_text", metavar="DATE",
              help="Look back to DATE this once, beyond what was read before.")
@click.option("--all", "show_all", is_flag=True,
              help="List every mail touch known, not only those this scan found.")
@click.pass_obj
def mail(obj: Context, since_text: str | None, show_all: bool) -> None:
    """Scan the mailboxes now (read-only) and list, per lead, the touches found.

    With -v, also the messages skipped (lists, robots, out-of-office replies, crowds, and
    messages that cannot be read) and why."""
    from followsync.commands.show import print_mail
    from followsync.durations import parse_date
    from followsync.leads import load_leads
    from followsync.sources.scan import lead_addresses, scan_mailboxes
    from followsync.state import lock_state, open_state, shortcuts_in

    config = obj.config()
    if not config.mailboxes:
        raise click.UsageError(f"{config.path} has no `mail:` section (README, \"Mail\")")
    try:
        since = parse_date(since_text) if since_text else None
    except ValueError as exc:
        raise click.UsageError(f"--since: {exc}") from None
    book = load_leads(list(config.lead_paths), named_at=config.lead_named_at,
                      shortcuts=shortcuts_in(config.state_dir))
    today = config.today(obj.now(config))
    lock = lock_state(config.state_dir)
    try:
        state = open_state(config.state_dir)
        try:
            reports = scan_mailboxes(config, lead_addresses(book), state, today, since=since)
            known = state.mail_touches() if show_all else None
        finally:
            state.close()
    finally:
        lock.release()
    code = print_mail(reports, book, config.timezone, obj.say, known)
    if obj.verbose:  # what was skipped and why (README "Mail")
        for report in reports:
            for line in report.skipped_lines(config.timezone):
                obj.say(line)
    _exit(code)


@cli.command()
@click.pass_obj
def calendars(obj: Context) -> None:
    """List each CalDAV, Google or Microsoft target's calendars, marking the one used."""
    config = obj.config()
    targets = [t for t in config.targets if t.type in ("caldav", "google", "microsoft")]
    if not targets:
        raise click.UsageError(f"{config.path} has no caldav, google or microsoft target")
    failed = False
    for target in targets:
        if target.type == "google":
            failed = not _google_calendars(obj, config, target) or failed
            continue
        if target.type == "microsoft":
            failed = not _microsoft_calendars(obj, target) or failed
            continue
        from followsync.backends.caldav import CaldavBackend

        backend = CaldavBackend(target)
        try:
            found = backend.calendars()
        except FollowsyncError as exc:
            from followsync.sync.report import named_once

            click.echo(named_once(target.name, str(exc)), err=True)
            failed = True
            continue
        finally:
            backend.close()
        obj.say(f"{target.name} ({target.username or 'no user'} at {target.url}):")
        for cal in found:
            used = (cal["name"] == target.calendar) if target.calendar else \
                cal["url"].rstrip("/") == (target.url or "").rstrip("/")
            mark = "*" if used else " "
            comps = "/".join(cal["components"]) or "?"
            obj.say(f" {mark} {cal['name'] or '(no name)':<28} {comps:<14} {cal['url']}")
        if target.calendar and not any(c["name"] == target.calendar for c in found):
            obj.say(f"   {target.calendar!r} does not exist yet: the next sync creates it")
    if failed:
        raise SystemExit(3)


def _google_calendars(obj: Context, config: Config, target: Target) -> bool:
    """`followsync calendars` for a google target; False when it could not list them."""
    from followsync.backends.google import GoogleBackend
    from followsync.googleauth import settings_for

    backend = GoogleBackend(settings_for(target), readonly=True)
    try:
        found = backend.calendars()
    except FollowsyncError as exc:
        from followsync.sync.report import named_once

        click.echo(named_once(target.name, str(exc)), err=True)
        return False
    finally:
        backend.close()
    obj.say(f"{target.name} (Google Calendar):")
    for cal in found:
        used = cal["name"] == target.calendar or (target.calendar == "primary"
                                                  and cal["primary"])
        mark = "*" if used else " "
        obj.say(f" {mark} {cal['name'] or '(no name)':<28} {cal['access']:<14} {cal['id']}")
    if target.calendar != "primary" and not any(c["name"] == target.calendar for c in found):
        obj.say(f"   {target.calendar!r} does not exist yet: the next sync creates it")
    return True


def _microsoft_calendars(obj: Context, target: Target) -> bool:
    """`followsync calendars` for a microsoft target; False when it could not list them."""
    from followsync.backends.microsoft import MicrosoftBackend
    from followsync.msauth import settings_for

    try:
        backend = MicrosoftBackend(settings_for(target), readonly=True)
        try:
            found = backend.calendars()
        finally:
            backend.close()
    except FollowsyncError as exc:
        from followsync.sync.report import named_once

        click.echo(named_once(target.name, str(exc)), err=True)
        return False
    obj.say(f"{target.name} (Outlook):")
    wanted = target.calendar or "default"
    usable = [c for c in found if c["access"] == "owner" and  # (as the backend finds it)
              str(c["name"]).casefold() == wanted.casefold()]
    chosen = next((c for c in usable if c["name"] == wanted), usable[0] if usable else None)
    for cal in found:
        used = cal is chosen or (wanted == "default" and cal["default"])
        mark = "*" if used else " "
        access = ("owner" if cal["access"] == "owner" else "read only") + (
            ", default" if cal["default"] else "")
        obj.say(f" {mark} {cal['name'] or '(no name)':<28} {access:<20} {cal['id']}")
    if wanted != "default" and chosen is None:
        obj.say(f"   {wanted!r} does not exist yet: the next sync creates it")
    return True


@cli.command()
@click.argument("name", metavar="NAME")
@click.option("--no-browser", is_flag=True,
              help="Google: only print the sign-in URL (e.g. over SSH).")
@click.pass_obj
def auth(obj: Context, name: str, no_browser: bool) -> None:
    """Sign in for a Google or Microsoft target or OAuth mailbox, and keep its token.

    NAME is a `type: google` or `type: microsoft` target, or a mailbox with `auth:
    microsoft` or `auth: google`. See the README, sections "Google Calendar" and
    "Microsoft 365 and Outlook.com"."""
    config = obj.config()
    target = next((t for t in config.targets if t.name == name), None)
    mailbox = next((m for m in config.mailboxes if m.name == name), None)
    if target is not None and target.type == "google":
        _google_auth(obj, target, no_browser)
    elif target is not None and target.type == "microsoft":
        _microsoft_auth(obj, config, target)
    elif mailbox is not None and mailbox.auth == "microsoft":
        _microsoft_auth(obj, config, mailbox)
    elif mailbox is not None and mailbox.auth == "google":
        _google_auth(obj, mailbox, no_browser)
    else:
        can = [f"{t.name} ({t.type} target)" for t in config.targets
               if t.type in ("google", "microsoft")]
        can += [f"{m.name} (mailbox, auth: {m.auth})" for m in config.mailboxes
                if m.auth != "password"]
        raise click.UsageError(
            f"nothing named {name!r} in {config.path} signs in: "
            + (f"names that can: {', '.join(can)}" if can else
               "only google and microsoft targets and mailboxes with `auth: microsoft` or "
               "`auth: google` do"))


def _google_auth(obj: Context, entry: Target | MailConfig, no_browser: bool) -> None:
    """The Google sign-in (loopback): a target's calendar, or a mailbox's mail scope."""
    from followsync.googleauth import settings_for, sign_in

    where = sign_in(settings_for(entry), open_browser=not no_browser,
                    say=lambda text: click.echo(text, err=True))
    obj.say(f"{entry.name}: signed in; the token is kept in {where}")


def _microsoft_auth(obj: Context, config: Config, entry: Target | MailConfig) -> None:
    """The device-code sign-in; every other entry of the same app, tenant and endpoint is
    covered by it too (a mailbox only when its username is the account signed in)."""
    from followsync.msauth import SERVICE, settings_for, sign_in

    named = settings_for(entry)
    entries: list[Target | MailConfig] = [t for t in config.targets if t.type == "microsoft"]
    entries += [m for m in config.mailboxes if m.auth == "microsoft"]
    others = [settings_for(e) for e in entries if e is not entry]
    others = [o for o in others if o.signin == named.signin]
    done = sign_in(named, others, say=click.echo)  # the code is shown even with -q
    obj.say(f"signed in to Microsoft as {done.account.username or '(no name given)'}:")
    for settings, where in done.covered:
        obj.say(f"  {settings.who}: {SERVICE[settings.resource]}; the refresh token is "
                f"kept in {where}")
    for settings, why in done.left:
        click.echo(f"  {settings.who}: not signed in: {why}\n"
                   f"    run `followsync auth {settings.name}`", err=True)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the lead file (for editors' completion and checks)."""
    import json

    from followsync.leads import schema as lead_schema

    click.echo(json.dumps(lead_schema(), indent=2))


def _exit(code: int) -> None:
    if code:
        raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every error a user can cause maps to an exit code, never a traceback.
    (The collector is paused where leads are loaded and planned, not here: see gcpause.)"""
    return _run(sys.argv[1:] if argv is None else argv)


def run() -> int:
    """The program (the `followsync` script and `python -m followsync`): `main` on the
    process's own arguments; then what is left is frozen (`gc.freeze`), so the interpreter's
    exit does not walk every object in a last garbage collection: ~30 ms of a 0.23 s
    one-change sync. Everything is written and closed by then; stdout and stderr are still
    flushed at exit."""
    code = main()
    gc.freeze()
    return code


def _run(args: list[str]) -> int:
    try:
        cli.main(args=args, prog_name="followsync", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        return exc.exit_code
    except FollowsyncError as exc:
        click.echo(f"followsync: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # a bug: say so briefly, the traceback only with -v
        if any(a in ("-v", "--verbose", "-vv") for a in args):
            raise
        click.echo(f"followsync: internal error: {type(exc).__name__}: {exc}\n"
                   "  this is a bug; run again with -v for details and report it", err=True)
        return EXIT_BUG
    return 0


