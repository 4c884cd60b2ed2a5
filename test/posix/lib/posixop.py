#!/usr/bin/env python3
"""
One process = one POSIX caller identity, driven by JSON lines on stdin (test/posix/lib/posix.ts).

Started as root, it drops to the requested uid/gid/supplementary groups (setgroups, setresgid,
setresuid: real, effective and saved ids all change, as for a login), then executes one system call
per request line and answers one line:
    request:  {"op": "open", "a": ["/mnt/f", ["O_WRONLY", "O_CREAT"], 420]}
    answer:   {"r": 3}          or   {"e": "EACCES"}
so tests compare errno names, not messages. File descriptors are real numbers of this process, so
locks are held by this process (a second PosixProc is a second lock owner). Bytes travel as base64.

Calls the os module lacks go through ctypes (utimensat with UTIME_NOW/UTIME_OMIT, fallocate
modes, renameat2 flags, struct flock for F_GETLK) so no compiler is needed.
"""
import base64
import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import stat
import struct
import subprocess
import sys
import time

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
FALLOC = {"KEEP_SIZE": 0x01, "PUNCH_HOLE": 0x02, "COLLAPSE_RANGE": 0x08, "ZERO_RANGE": 0x10, "INSERT_RANGE": 0x20}
RENAME = {"NOREPLACE": 1, "EXCHANGE": 2, "WHITEOUT": 4}


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(Timespec), ctypes.c_int]
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]


def check(rc):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return 0


def b(path):
    return path.encode("utf-8", "surrogateescape") if isinstance(path, str) else path


def st_dict(s):
    return {
        "mode": s.st_mode, "type": stat.S_IFMT(s.st_mode) >> 12, "perm": stat.S_IMODE(s.st_mode),
        "ino": s.st_ino, "nlink": s.st_nlink, "uid": s.st_uid, "gid": s.st_gid, "size": s.st_size,
        "blocks": s.st_blocks,
        # nanoseconds as strings: JSON numbers lose precision past 2^53
        "atime_ns": str(s.st_atime_ns), "mtime_ns": str(s.st_mtime_ns), "ctime_ns": str(s.st_ctime_ns),
        "rdev": s.st_rdev,
    }


def flags_of(names):
    f = 0
    for n in names:
        f |= getattr(os, n)
    return f


def ts(spec):
    """A utimensat time: "now", "omit", or [sec, nsec]."""
    if spec == "now":
        return Timespec(0, UTIME_NOW)
    if spec == "omit":
        return Timespec(0, UTIME_OMIT)
    return Timespec(int(spec[0]), int(spec[1]))


FLOCK_FMT = "=hh4xqqi4x"  # struct flock on x86_64/aarch64 Linux: 32 bytes
LOCK_TYPES = {"rd": fcntl.F_RDLCK, "wr": fcntl.F_WRLCK, "un": fcntl.F_UNLCK}
LOCK_NAMES = {v: k for k, v in LOCK_TYPES.items()}
FLOCK_OPS = {"sh": fcntl.LOCK_SH, "ex": fcntl.LOCK_EX, "un": fcntl.LOCK_UN}


def op_fcntl_lock(fd, cmd, typ, start, length, whence=0):
    c = {"setlk": fcntl.F_SETLK, "setlkw": fcntl.F_SETLKW, "getlk": fcntl.F_GETLK}[cmd]
    arg = struct.pack(FLOCK_FMT, LOCK_TYPES[typ], whence, start, length, 0)
    res = fcntl.fcntl(fd, c, arg)
    t, w, s, l, pid = struct.unpack(FLOCK_FMT, res)
    if cmd == "getlk":
        return {"type": LOCK_NAMES.get(t, t), "start": s, "len": l, "pid": pid}
    return 0


def run_exec(path, args=()):
    p = subprocess.run([path, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    return {"code": p.returncode, "out": p.stdout.decode("utf-8", "replace")}


def read_fd(fd, n):
    return base64.b64encode(os.read(fd, n)).decode()


def read_file(path):
    with open(b(path), "rb") as f:
        return base64.b64encode(f.read()).decode()


def write_file(path, data, mode=0o644):
    fd = os.open(b(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        buf = base64.b64decode(data)
        while buf:
            n = os.write(fd, buf)
            buf = buf[n:]
    finally:
        os.close(fd)
    return 0


def listdir(path):
    return sorted(os.fsdecode(n) for n in os.listdir(b(path)))


OPS = {
    "open": lambda p, fl, mode=0o644: os.open(b(p), flags_of(fl), mode),
    "close": lambda fd: os.close(fd),
    "read": read_fd,
    "pread": lambda fd, n, off: base64.b64encode(os.pread(fd, n, off)).decode(),
    "write": lambda fd, d: os.write(fd, base64.b64decode(d)),
    "pwrite": lambda fd, d, off: os.pwrite(fd, base64.b64decode(d), off),
    "lseek": lambda fd, off, whence: os.lseek(fd, off, {"set": 0, "cur": 1, "end": 2, "data": os.SEEK_DATA, "hole": os.SEEK_HOLE}[whence]),
    "fsync": lambda fd: os.fsync(fd),
    "fstat": lambda fd: st_dict(os.fstat(fd)),
    "stat": lambda p: st_dict(os.stat(b(p))),
    "lstat": lambda p: st_dict(os.lstat(b(p))),
    "exists": lambda p: os.path.lexists(b(p)),
    "access": lambda p, mode: 0 if os.access(b(p), mode) else -1,
    # access(2) itself (os.access hides the errno): ctypes for the errno name
    "access2": lambda p, mode: check(libc.access(b(p), mode)),
    "mkdir": lambda p, mode=0o755: os.mkdir(b(p), mode),
    "rmdir": lambda p: os.rmdir(b(p)),
    "unlink": lambda p: os.unlink(b(p)),
    "rename": lambda a, c: os.rename(b(a), b(c)),
    "renameat2": lambda a, c, fl: check(libc.renameat2(AT_FDCWD, b(a), AT_FDCWD, b(c), sum(RENAME[x] for x in fl))),
    "link": lambda a, c: os.link(b(a), b(c)),
    "symlink": lambda target, p: os.symlink(b(target), b(p)),
    "readlink": lambda p: os.fsdecode(os.readlink(b(p))),
    "mknod": lambda p, mode: os.mknod(b(p), mode),
    "mkfifo": lambda p, mode=0o644: os.mkfifo(b(p), mode),
    "chmod": lambda p, mode: os.chmod(b(p), mode),
    "fchmod": lambda fd, mode: os.fchmod(fd, mode),
    "chown": lambda p, uid, gid: os.chown(b(p), uid, gid),
    "lchown": lambda p, uid, gid: os.lchown(b(p), uid, gid),
    "truncate": lambda p, n: os.truncate(b(p), n),
    "ftruncate": lambda fd, n: os.ftruncate(fd, n),
    "utime_ns": lambda p, a, m: os.utime(b(p), ns=(int(a), int(m))),
    "utime_now": lambda p: os.utime(b(p)),
    "utimensat": lambda p, a, m, nofollow=False: check(
        libc.utimensat(AT_FDCWD, b(p), (Timespec * 2)(ts(a), ts(m)), AT_SYMLINK_NOFOLLOW if nofollow else 0)),
    "posix_fallocate": lambda fd, off, n: os.posix_fallocate(fd, off, n),
    "fallocate": lambda fd, modes, off, n: check(libc.fallocate(fd, sum(FALLOC[m] for m in modes), off, n)),
    "setxattr": lambda p, name, val, fl=(): os.setxattr(
        b(p), name, base64.b64decode(val), sum({"CREATE": os.XATTR_CREATE, "REPLACE": os.XATTR_REPLACE}[f] for f in fl)),
    "getxattr": lambda p, name: base64.b64encode(os.getxattr(b(p), name)).decode(),
    "listxattr": lambda p: sorted(os.listxattr(b(p))),
    "removexattr": lambda p, name: os.removexattr(b(p), name),
    "flock": lambda fd, how, nb=True: fcntl.flock(fd, FLOCK_OPS[how] | (fcntl.LOCK_NB if nb else 0)),
    "lock": op_fcntl_lock,
    "exec": run_exec,
    "chdir": lambda p: os.chdir(b(p)),
    "listdir": listdir,
    "readfile": read_file,
    "writefile": write_file,
    "statvfs": lambda p: {k: getattr(os.statvfs(b(p)), k) for k in ("f_bsize", "f_blocks", "f_bfree", "f_namemax")},
    "umask": lambda m: os.umask(m),
    "getpid": lambda: os.getpid(),
    "ids": lambda: {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(), "groups": sorted(os.getgroups())},
    "sleep": lambda s: time.sleep(s),
}


def main():
    args = sys.argv[1:]
    opt = {args[i]: args[i + 1] for i in range(0, len(args), 2)}
    if "--groups" in opt:
        os.setgroups([int(g) for g in opt["--groups"].split(",") if g])
    if "--gid" in opt:
        g = int(opt["--gid"])
        os.setresgid(g, g, g)
    if "--uid" in opt:
        u = int(opt["--uid"])
        os.setresuid(u, u, u)
    os.umask(int(opt.get("--umask", "022"), 8))
    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            r = OPS[req["op"]](*req.get("a", []))
            resp = {"r": r}
        except OSError as e:
            resp = {"e": errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__}
        except Exception as e:  # a bug in the request, not a file system answer
            resp = {"x": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(resp) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
