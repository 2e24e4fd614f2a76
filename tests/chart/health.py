#!/usr/bin/env python3
"""Run the Argo CD health check (manifests/gitops/argocd/health.lua) on MaintenancePolicy
objects with Lua 5.1 (Argo CD's gopher-lua is 5.1), through lupa.

  health.py LUA FIXTURE_DIR      fixtures: <expected status>--<name>.json (real objects
                                 read from an API server the controller reconciled)
  health.py LUA -                one object as JSON on stdin; prints status and message
"""
import json
import os
import sys

import lupa.lua51 as lua51


def health(script, obj):
    rt = lua51.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(v):
        if isinstance(v, dict):
            return rt.table_from({k: to_lua(x) for k, x in v.items()})
        if isinstance(v, list):
            return rt.table_from([to_lua(x) for x in v])
        return v

    rt.globals().obj = to_lua(obj)
    hs = rt.execute(script)
    return hs["status"], hs["message"]


def main():
    script = open(sys.argv[1]).read()
    if sys.argv[2] == "-":
        print(*health(script, json.load(sys.stdin)))
        return 0
    bad = 0
    files = sorted(f for f in os.listdir(sys.argv[2]) if f.endswith(".json"))
    for f in files:
        want = f.split("--")[0]
        got, msg = health(script, json.load(open(os.path.join(sys.argv[2], f))))
        ok = got == want
        bad += not ok
        print(f"  {'ok ' if ok else 'BAD'} {f}: {got} ({msg})" + ("" if ok else f", want {want}"))
    if not files:
        print("no fixtures", file=sys.stderr)
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
