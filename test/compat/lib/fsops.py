"""File operations node's fs cannot do (xattrs, nanosecond utimes, mkfifo), for the compat tests.

A long-lived co-process: reads one JSON operation per line on stdin and answers one JSON line
{"ok": result} or {"error": errno-name, "message": ...} (spawning python per call costs ~0.5 s).
  {"op": "setxattr", "path": p, "name": n, "value": base64}
  {"op": "utime", "path": p, "atime_ns": "int", "mtime_ns": "int"}
  {"op": "mkfifo", "path": p, "mode": int}
  {"op": "xattrs", "paths": [p, ...]}   -> {p: {name: base64}}
"""
import base64
import errno
import json
import os
import sys


def run(op):
    kind = op["op"]
    if kind == "setxattr":
        os.setxattr(op["path"], op["name"], base64.b64decode(op["value"]), follow_symlinks=False)
        return None
    if kind == "utime":
        os.utime(op["path"], ns=(int(op["atime_ns"]), int(op["mtime_ns"])), follow_symlinks=False)
        return None
    if kind == "mkfifo":
        os.mkfifo(op["path"], op["mode"])
        os.chmod(op["path"], op["mode"])
        return None
    if kind == "xattrs":
        out = {}
        for p in op["paths"]:
            vals = {}
            for name in os.listxattr(p, follow_symlinks=False):
                vals[name] = base64.b64encode(os.getxattr(p, name, follow_symlinks=False)).decode()
            out[p] = vals
        return out
    raise ValueError("unknown op " + kind)


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = {"ok": run(json.loads(line))}
        except OSError as e:
            reply = {"error": errno.errorcode.get(e.errno, str(e.errno)), "message": str(e)}
        except Exception as e:  # a bug in a request: report it, keep serving
            reply = {"error": "EINVAL", "message": repr(e)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


main()
