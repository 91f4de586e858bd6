"""``streamkit dashboard``: the dashboard on its own, over any MongoDB a pipeline writes to."""
from __future__ import annotations

import argparse

from pymongo.errors import PyMongoError

from streamkit import echo

from .meta import SeedFields
from .server import DashboardError, DashboardServer
from .store import DashboardStore


def run_standalone(args: argparse.Namespace) -> int:
    from streamkit_mongodb import connect, release

    from . import warn_if_open

    uri = args.mongo_uri
    client = connect(uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000)
    try:
        try:
            client.admin.command("ping")
        except PyMongoError as exc:
            raise DashboardError(f"dashboard: cannot reach MongoDB at {uri}: {type(exc).__name__}") from None
        store = DashboardStore(client[args.database], args.collection,
                               fields=SeedFields(args.user_field, args.item_field, args.type_field))
        server = DashboardServer(store, host=args.host, port=args.port, token=args.auth_token,
                                 refresh=args.refresh, title=f"{args.database}.{args.collection}")
        server.bind()
        warn_if_open(args.host, args.auth_token, "--auth-token or $DASHBOARD_TOKEN")
        echo(f"dashboard: {server.url} — {args.database}.{args.collection} at {uri}"
             + (" (requests need the token)" if args.auth_token else "") + "; Ctrl-C stops it")
        server.serve()
        return 0
    finally:
        release(client, uri)
