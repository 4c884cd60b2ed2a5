"""File operations node's fs cannot do (xattrs, nanosecond utimes, mkfifo), for the compat tests.

A long-lived co-process: reads one JSON operation per line on stdin and answers one JSON line
{"ok": result} or {"error": errno-name, "message": ...} (spawning python per call costs ~0.5 s).
  {"op": "setxattr", "path": p, "name": n, "value": base64}
  {"op": "utime", "path": p, "atime_ns": "int", "mtime_ns": "int"}
  {"op": "mkfifo", "path": p, "mode": int}
  {"op": "mkchr", "path": p, "mode": int, "major": int, "minor": int}
  {"op": "xattrs", "paths": [p, ...]}   -> {p: {name: base64}}
  {"op": "open", "path": p, "flags": "r"|"rw"} -> fd            (kept open across requests)
  {"op": "close", "fd": fd}
  {"op": "flock", "fd": fd, "how": "ex"|"sh"|"un"}            (non-blocking; EAGAIN when held)
  {"op": "setlk", "fd": fd, "type": "rd"|"wr"|"un", "start": n, "len": n}   (F_SETLK)
  {"op": "getlk", "fd": fd, "type": "rd"|"wr", "start": n, "len": n} -> {type, start, len, pid}
"""
import base64
import errno
import fcntl
import json
import os
import stat
import struct
import sys

FDS = {}
# struct flock on Linux x86_64/aarch64: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
FLOCK = "hhqqi4x"
LOCK_TYPES = {"rd": fcntl.F_RDLCK, "wr": fcntl.F_WRLCK, "un": fcntl.F_UNLCK}
LOCK_NAMES = {v: k for k, v in LOCK_TYPES.items()}


def run(op):
    kind = op["op"]
    if kind == "setxattr":
        os.setxattr(op["path"], op["name"], base64.b64decode(op["value"]), follow_symlinks=False)
        return None
    if kind == "utime":
        os.utime(op["path"], ns=(int(op["atime_ns"]), int(op["mtime_ns"])), follow_symlinks=False)
        return None
    if kind == "mkchr":
        os.mknod(op["path"], op["mode"] | stat.S_IFCHR, os.makedev(op["major"], op["minor"]))
        os.chmod(op["path"], op["mode"])
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
    if kind == "open":
        fd = os.open(op["path"], os.O_RDWR if op.get("flags") == "rw" else os.O_RDONLY)
        FDS[fd] = True
        return fd
    if kind == "close":
        os.close(op["fd"])
        FDS.pop(op["fd"], None)
        return None
    if kind == "flock":
        how = {"ex": fcntl.LOCK_EX, "sh": fcntl.LOCK_SH, "un": fcntl.LOCK_UN}[op["how"]]
        fcntl.flock(op["fd"], how | (0 if op["how"] == "un" else fcntl.LOCK_NB))
        return None
    if kind in ("setlk", "getlk"):
        req = struct.pack(FLOCK, LOCK_TYPES[op["type"]], os.SEEK_SET, op["start"], op["len"], 0)
        res = fcntl.fcntl(op["fd"], fcntl.F_SETLK if kind == "setlk" else fcntl.F_GETLK, req)
        if kind == "setlk":
            return None
        t, _, start, length, pid = struct.unpack(FLOCK, res)
        return {"type": LOCK_NAMES.get(t, str(t)), "start": start, "len": length, "pid": pid}
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
