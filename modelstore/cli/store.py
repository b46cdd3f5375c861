"""``modelstore store list|show|push|pull``: the versioned store from the shell."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from ..errors import ArgumentError
from .output import size, table

HELP = (
    "examples:\n  modelstore store list\n  modelstore store --root s3://team-models show digits-mlp@prod\n"
    "  modelstore store push digits.safetensors digits-mlp --tag data=digits --alias staging\n"
    "  modelstore store pull digits-mlp@3 ./digits-v3\n"
    "the root defaults to $MODELSTORE_HOME, else ~/.modelstore"
)


def add_parser(sub: Any, make: Any) -> None:
    p = make(sub, "store", "a versioned model store on a folder or s3://, gs://... URI", HELP)
    p.add_argument(
        "--root",
        default=None,
        help="store folder or URI (default: $MODELSTORE_HOME or ~/.modelstore)",
    )
    actions = p.add_subparsers(dest="store_command", required=True)
    a = actions.add_parser("list", help="models and their versions")
    a.add_argument("name", nargs="?", help="list the versions of this model")
    a.add_argument("--json", action="store_true")
    a = actions.add_parser(
        "show", help="one version's manifest: files, sha256, metadata, tags, aliases"
    )
    a.add_argument("ref", help="NAME, NAME@VERSION or NAME@ALIAS")
    a.add_argument("--json", action="store_true")
    a = actions.add_parser(
        "push", help="add a model file as the next version of NAME (nothing is loaded)"
    )
    a.add_argument("path")
    a.add_argument("name")
    a.add_argument("--tag", action="append", default=[], metavar="KEY[=VALUE]")
    a.add_argument("--metadata", metavar="JSON", help="a JSON object kept in the manifest")
    a.add_argument(
        "--alias", action="append", default=[], help="point this alias at the new version"
    )
    a.add_argument(
        "--sign-with",
        metavar="KEY.pem",
        help="sign the files and store the signature with the version",
    )
    a.add_argument("--json", action="store_true")
    a = actions.add_parser("pull", help="copy a version's files into a local folder")
    a.add_argument("ref")
    a.add_argument("dest")
    a.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_store)


def cmd_store(args: argparse.Namespace, out: TextIO) -> int:
    from ..store import Store

    store = Store(args.root)
    action = args.store_command
    if action == "list":
        if args.name:
            rows = [v.to_dict() for v in store.versions(args.name)]
            if args.json:
                return _json(rows, out)
            cells = [["version", "created", "format", "size", "aliases", "tags"]]
            for r in rows:
                cells.append(
                    [
                        str(r["version"]),
                        r["created"],
                        r["format"],
                        size(r["size_bytes"]),
                        ",".join(r["aliases"]),
                        _tags(r["tags"]),
                    ]
                )
            table(cells, out)
            return 0
        summary: list[dict[str, Any]] = []
        for name in store.list():
            versions = store.versions(name)
            latest = versions[-1]
            aliases = sorted(f"{a}->{v.version}" for v in versions for a in v.aliases)
            summary.append(
                {
                    "name": name,
                    "versions": len(versions),
                    "latest": latest.version,
                    "format": latest.format,
                    "size_bytes": latest.size_bytes,
                    "created": latest.created,
                    "aliases": aliases,
                }
            )
        if args.json:
            return _json(summary, out)
        if not summary:
            out.write(f"no models in {store.root}\n")
            return 0
        cells = [["name", "versions", "latest", "format", "size", "created", "aliases"]]
        for s in summary:
            cells.append(
                [
                    s["name"],
                    str(s["versions"]),
                    str(s["latest"]),
                    s["format"],
                    size(s["size_bytes"]),
                    s["created"],
                    " ".join(s["aliases"]),
                ]
            )
        table(cells, out)
        return 0
    if action == "show":
        v = store.info(args.ref)
        if args.json:
            return _json(v.to_dict(), out)
        table(
            [
                ["model", v.ref],
                ["path", v.path],
                ["format", f"{v.format} ({v.framework})"],
                ["created", v.created],
                ["size", f"{size(v.size_bytes)} ({v.size_bytes:,} bytes)"],
                ["sha256", v.sha256 or "-"],
                ["aliases", ", ".join(v.aliases) or "-"],
                ["tags", _tags(v.tags) or "-"],
                ["metadata", json.dumps(v.metadata, sort_keys=True)[:400] if v.metadata else "-"],
            ],
            out,
        )
        out.write("\n")
        table(
            [["file", "bytes"], *([k, f"{n:,}"] for k, n in sorted(v.files.items()))],
            out,
            right={1},
        )
        return 0
    if action == "push":
        tags = dict(t.split("=", 1) if "=" in t else (t, "") for t in args.tag)
        metadata = None
        if args.metadata:
            from ..security.jsonsafe import loads

            try:
                metadata = loads(args.metadata, where="--metadata")
            except ValueError as e:
                raise ArgumentError(str(e)) from None
            if not isinstance(metadata, dict):
                raise ArgumentError("--metadata must be a JSON object")
        number = store.push(
            args.path, args.name, metadata=metadata, tags=tags, sign_with=args.sign_with
        )
        for alias in args.alias:
            store.alias(args.name, number, alias)
        v = store.info(f"{args.name}@{number}")
        if args.json:
            return _json(v.to_dict(), out)
        out.write(f"pushed {v.ref} ({size(v.size_bytes)}) to {v.path}\n")
        return 0
    path = store.pull(args.ref, args.dest)
    if args.json:
        return _json({"ref": store.info(args.ref).ref, "path": str(path)}, out)
    out.write(f"{path}\n")
    return 0


def _tags(tags: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" if v else k for k, v in sorted(tags.items()))


def _json(data: Any, out: TextIO) -> int:
    json.dump(data, out, indent=2)
    out.write("\n")
    return 0
