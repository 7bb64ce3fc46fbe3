"""``corral acl``: print the Redis ACL rules of a least-privilege user for one role."""

from __future__ import annotations

import argparse

from corral.acl import Role, acl_rules, default_user, setuser_command
from corral.cli.args import Subcommands, prefix_of, queue_arg


def add_acl(subcommands: Subcommands) -> None:
    text = ("print the ACL SETUSER line of a Redis user that can do one role's work on "
            "some queues, and nothing else (add a password: >secret)")
    command = subcommands.add_parser("acl", help="print a least-privilege Redis user's ACL",
                                     description=text)
    command.add_argument("--role", required=True, choices=[r.value for r in Role],
                         help="worker: runs tasks; producer: enqueues, waits, cancels, "
                              "inspects and handles dead letters; operator: reads depths")
    command.add_argument("--queues", required=True, type=_queue_list, metavar="A,B",
                         help="the queues the user may use, comma-separated")
    command.add_argument("--user", default=None,
                         help="user name (default corral-ROLE)")
    command.set_defaults(run=print_acl)


def _queue_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    return [queue_arg(name) for name in names]


def print_acl(args: argparse.Namespace) -> int:
    role = Role(args.role)
    user = args.user or default_user(role)
    print(setuser_command(user, acl_rules(role, args.queues, prefix_of(args))))
    return 0
