"""Who you are: ``login``, ``whoami``; what is yours: ``chmod``, ``chown``; and, for admins,
``admin user add|list|remove|reset-token``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydfs import config
from pydfs.cli.context import Context, carry_cwd
from pydfs.errors import InvalidArgument


def run_login(args: argparse.Namespace) -> int:
    """Check a token with the name node, then save it (mode 0600) in the client config."""
    import asyncio
    import getpass

    from pydfs.client import AsyncClient

    if args.token_file:
        token = Path(args.token_file).read_text().strip()
    elif sys.stdin.isatty():
        token = getpass.getpass("token: ").strip()
    else:
        token = sys.stdin.readline().strip()
    if not token:
        raise InvalidArgument("no token given")

    async def check() -> tuple[str, str]:
        async with AsyncClient(args.namenode, token=token, ca=args.ca) as client:
            return client.namenode, (await client.whoami()).name

    namenode, name = asyncio.run(check())
    current = config.ClientConfig.read()
    path = config.ClientConfig(
        namenode=namenode,
        user=name,
        token=token,
        ca=args.ca or current.ca,
        failover_timeout=current.failover_timeout,
    ).write()
    print(f"logged in to {namenode} as {name}; token saved in {path}")
    return 0


async def whoami(ctx: Context, args: argparse.Namespace) -> int:
    me = await ctx.client.whoami()
    groups = ",".join([me.name, *me.groups])
    ctx.out(f"{me.name} (groups {groups}){' admin' if me.admin else ''}, home {me.home}", me)
    return 0


def _mode(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"mode must be octal, such as 750: {text!r}") from None
    if not 0 <= value <= 0o1777:
        raise argparse.ArgumentTypeError(f"mode out of range: {text!r}")
    return value


async def chmod(ctx: Context, args: argparse.Namespace) -> int:
    changed = await ctx.client.chmod(ctx.path(args.path), args.mode, recursive=args.recursive)
    ctx.out("", {"changed": changed})
    return 0


async def chown(ctx: Context, args: argparse.Namespace) -> int:
    owner, _, group = args.owner.partition(":")
    changed = await ctx.client.chown(
        ctx.path(args.path), owner or None, group or None, recursive=args.recursive
    )
    ctx.out("", {"changed": changed})
    return 0


async def user_add(ctx: Context, args: argparse.Namespace) -> int:
    groups = [g for g in (args.groups or "").split(",") if g]
    token = await ctx.client.add_user(args.name, admin=args.admin, groups=groups)
    ctx.out(
        f"user {args.name} created, home /user/{args.name}\ntoken (shown once): {token}\n"
        f"they run: pydfs login --namenode {ctx.client.namenode}",
        {"name": args.name, "token": token},
    )
    return 0


async def user_list(ctx: Context, args: argparse.Namespace) -> int:
    users = await ctx.client.users()
    lines = [
        f"{u.name:<16} {'admin' if u.admin else 'user':<6} {','.join(u.groups)}" for u in users
    ]
    ctx.out("\n".join(lines), users)
    return 0


async def user_remove(ctx: Context, args: argparse.Namespace) -> int:
    await ctx.client.remove_user(args.name)
    ctx.out(f"user {args.name} removed (their files stay)", {"removed": args.name})
    return 0


async def user_reset(ctx: Context, args: argparse.Namespace) -> int:
    """A new token for a user. One's own old token dies at once, so the new one is saved in
    the client config (with the working directory that went with the old one)."""
    mine = (await ctx.client.whoami()).name == args.name
    old = ctx.client.token
    token = await ctx.client.reset_token(args.name)
    answer: dict[str, object] = {"name": args.name, "token": token}
    lines = [f"new token for {args.name} (shown once): {token}"]
    if mine:
        current = config.ClientConfig.read()
        saved = config.ClientConfig(
            ctx.client.namenode, args.name, token, current.ca, current.failover_timeout
        ).write()
        carry_cwd(ctx.client, token)
        answer["saved"] = str(saved)
        lines.append(f"it is your own: saved in {saved}, as `pydfs login` does")
        if os.environ.get("PYDFS_TOKEN") == old:
            lines.append("$PYDFS_TOKEN still holds the old token: set it to the new one")
    ctx.out("\n".join(lines), answer)
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("login", help="check a token and save it in the client config")
    p.add_argument("--token-file", help="read the token from this file (else a prompt or stdin)")
    p.add_argument("--ca", help="CA bundle that verifies an HTTPS name node")
    p.set_defaults(run=run_login)

    p = sub.add_parser("whoami", help="the user your token belongs to")
    p.set_defaults(handler=whoami)

    p = sub.add_parser("chmod", help="set permission bits (octal, e.g. 750)")
    p.add_argument("-R", "--recursive", action="store_true")
    p.add_argument("mode", type=_mode)
    p.add_argument("path")
    p.set_defaults(handler=chmod)

    p = sub.add_parser("chown", help="set owner (admins) and/or group: OWNER, OWNER:GROUP, :GROUP")
    p.add_argument("-R", "--recursive", action="store_true")
    p.add_argument("owner")
    p.add_argument("path")
    p.set_defaults(handler=chown)


def add_user_parsers(admin_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = admin_sub.add_parser("user", help="users and their tokens")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    p = user_sub.add_parser("add", help="create a user (and /user/NAME); prints its token")
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="an administrator (superuser)")
    p.add_argument("--groups", help="comma-separated groups besides its own")
    p.set_defaults(handler=user_add)
    p = user_sub.add_parser("list", help="every user")
    p.set_defaults(handler=user_list)
    p = user_sub.add_parser("remove", help="revoke a user (its files stay)")
    p.add_argument("name")
    p.set_defaults(handler=user_remove)
    p = user_sub.add_parser("reset-token", help="issue a new token; the old one stops working")
    p.add_argument("name")
    p.set_defaults(handler=user_reset)
