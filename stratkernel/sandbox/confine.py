"""The process layer, applied by a sandbox worker to itself once it has imported everything it needs.

Each step is best effort and reported (``confine()`` returns what held and what did not, with the
errno), because what an unprivileged process may do differs between machines:

1. ``unshare(CLONE_NEWNET)`` (with ``CLONE_NEWUSER`` when not root): a network namespace with no
   interfaces, so no socket can reach anything even if one could be created.
2. resource limits: RLIMIT_CORE=0, RLIMIT_FSIZE=0, RLIMIT_NOFILE small, RLIMIT_NPROC=0, RLIMIT_AS
   (a backstop; the parent polls RSS), RLIMIT_CPU (a lifetime backstop).
3. when started as root: drop to uid/gid 65534 (nobody) with no supplementary groups, so file
   permissions apply and RLIMIT_NPROC counts (root ignores it).
4. ``PR_SET_NO_NEW_PRIVS`` and a seccomp-BPF filter built by hand (no libseccomp needed) that makes
   these fail with EPERM/EACCES: every ``open``/``openat``/``creat`` (the worker needs no file after
   start-up), sockets, ``execve``, ``fork``/``vfork``/``clone`` without ``CLONE_THREAD``
   (``clone3`` gets ENOSYS so libc falls back to ``clone``), ``kill``/``tgkill`` of any process but
   itself, ptrace and process_vm_*, namespace/mount/module/keyring/bpf/perf/io_uring calls, file
   system changes (unlink, rename, mkdir, chmod, chown, truncate, link), ``setrlimit``/``prlimit64``
   and the TIOCSTI ioctl. Any other architecture/ABI (x32) is killed.
5. ``PR_SET_PDEATHSIG`` = SIGKILL (set after the uid change, which would clear it): the worker dies with
   the kernel process instead of running on until RLIMIT_CPU.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import signal
import struct
from typing import Any

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_THREAD = 0x00010000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7

# BPF opcodes
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06

# seccomp_data: int nr; u32 arch; u64 ip; u64 args[6]  (little-endian: low word of arg i at 16 + 8*i)
OFF_NR, OFF_ARCH = 0, 4


def _arg_lo(i: int) -> int:
    return 16 + 8 * i


# Syscall numbers per architecture. aarch64 has no open/fork/vfork/creat etc. (only the *at forms).
_X86_64 = {
    "open": 2, "openat": 257, "openat2": 437, "creat": 85, "open_by_handle_at": 304, "name_to_handle_at": 303,
    "socket": 41, "connect": 42, "accept": 43, "bind": 49, "listen": 50, "socketpair": 53, "accept4": 288,
    "execve": 59, "execveat": 322, "fork": 57, "vfork": 58, "clone": 56, "clone3": 435,
    "kill": 62, "tkill": 200, "tgkill": 234, "ptrace": 101, "process_vm_readv": 310,
    "process_vm_writev": 311, "mount": 165, "umount2": 166, "unshare": 272, "setns": 308, "chroot": 161,
    "pivot_root": 155, "personality": 135, "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321,
    "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "kexec_load": 246, "reboot": 169, "swapon": 167, "swapoff": 168, "setrlimit": 160, "prlimit64": 302,
    "unlink": 87, "unlinkat": 263, "rename": 82, "renameat": 264, "renameat2": 316, "mkdir": 83,
    "mkdirat": 258, "rmdir": 84, "link": 86, "linkat": 265, "symlink": 88, "symlinkat": 266, "chmod": 90,
    "fchmod": 91, "fchmodat": 268, "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260,
    "truncate": 76, "ftruncate": 77, "mknod": 133, "mknodat": 259, "ioctl": 16,
}  # fmt: skip
_AARCH64 = {
    "openat": 56, "openat2": 437, "open_by_handle_at": 265, "name_to_handle_at": 264,
    "socket": 198, "connect": 203, "accept": 202, "bind": 200, "listen": 201, "socketpair": 199,
    "accept4": 242, "execve": 221, "execveat": 281, "clone": 220, "clone3": 435, "kill": 129,
    "tkill": 130, "tgkill": 131, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
    "mount": 40, "umount2": 39, "unshare": 97, "setns": 268, "chroot": 51, "pivot_root": 41,
    "personality": 92, "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280,
    "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "init_module": 105, "finit_module": 273, "delete_module": 106,
    "kexec_load": 104, "reboot": 142, "swapon": 224, "swapoff": 225, "setrlimit": 164, "prlimit64": 261,
    "unlinkat": 35, "renameat": 38, "renameat2": 276, "mkdirat": 34, "linkat": 37, "symlinkat": 36,
    "fchmod": 52, "fchmodat": 53, "fchown": 55, "fchownat": 54, "truncate": 45, "ftruncate": 46,
    "mknodat": 33, "ioctl": 29,
}  # fmt: skip

_OPEN_CALLS = ("open", "openat", "openat2", "creat", "open_by_handle_at")
_SELF_SIGNAL_CALLS = ("kill", "tgkill")
TIOCSTI = 0x5412


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k & 0xFFFFFFFF)


def build_filter(pid: int) -> tuple[bytes, int]:
    """The BPF program (bytes of sock_filter) and its instruction count, for this machine's arch."""
    machine = platform.machine()
    if machine in ("x86_64", "AMD64"):
        table, arch = _X86_64, AUDIT_ARCH_X86_64
    elif machine in ("aarch64", "arm64"):
        table, arch = _AARCH64, AUDIT_ARCH_AARCH64
    else:
        raise OSError(errno.ENOSYS, f"no seccomp table for {machine}")
    eperm = SECCOMP_RET_ERRNO | errno.EPERM
    prog: list[bytes] = [
        _ins(BPF_LD_W_ABS, 0, 0, OFF_ARCH),
        _ins(BPF_JEQ_K, 1, 0, arch),
        _ins(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        _ins(BPF_LD_W_ABS, 0, 0, OFF_NR),
    ]
    if arch == AUDIT_ARCH_X86_64:  # the x32 ABI sets bit 30 of nr; nothing here uses it
        prog += [_ins(BPF_JGE_K, 0, 1, 0x40000000), _ins(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS)]
    for name, nr in table.items():
        if name == "clone":
            # threads (CLONE_THREAD) may be created; a new process may not
            prog += [
                _ins(BPF_JEQ_K, 0, 4, nr),
                _ins(BPF_LD_W_ABS, 0, 0, _arg_lo(0)),
                _ins(BPF_JSET_K, 0, 1, CLONE_THREAD),
                _ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
                _ins(BPF_RET_K, 0, 0, eperm),
            ]
        elif name in _SELF_SIGNAL_CALLS:
            # abort() and raise() signal the process itself; signalling anyone else is refused
            prog += [
                _ins(BPF_JEQ_K, 0, 4, nr),
                _ins(BPF_LD_W_ABS, 0, 0, _arg_lo(0)),
                _ins(BPF_JEQ_K, 0, 1, pid),
                _ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
                _ins(BPF_RET_K, 0, 0, eperm),
            ]
        elif name == "ioctl":
            prog += [
                _ins(BPF_JEQ_K, 0, 4, nr),
                _ins(BPF_LD_W_ABS, 0, 0, _arg_lo(1)),
                _ins(BPF_JEQ_K, 0, 1, TIOCSTI),
                _ins(BPF_RET_K, 0, 0, eperm),
                _ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
            ]
        elif name == "clone3":
            prog += [_ins(BPF_JEQ_K, 0, 1, nr), _ins(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS)]
        elif name in _OPEN_CALLS:
            prog += [_ins(BPF_JEQ_K, 0, 1, nr), _ins(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EACCES)]
        else:
            prog += [_ins(BPF_JEQ_K, 0, 1, nr), _ins(BPF_RET_K, 0, 0, eperm)]
    prog.append(_ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return b"".join(prog), len(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_seccomp() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    code, count = build_filter(os.getpid())
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(count, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def _unshare_network() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    flags = CLONE_NEWNET if os.geteuid() == 0 else (CLONE_NEWUSER | CLONE_NEWNET)
    if libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), "unshare")


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def _vm_size_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def confine(*, memory_mb: int, cpu_seconds: int, keep_fds: int) -> dict[str, Any]:
    """Apply every layer this machine allows; return {step: "ok" | "failed: <reason>"}.

    ``keep_fds`` is one more than the highest descriptor the worker still needs (RLIMIT_NOFILE).
    """
    report: dict[str, Any] = {}

    def step(name: str, fn: Any) -> None:
        try:
            fn()
            report[name] = "ok"
        except OSError as exc:
            report[name] = f"failed: {errno.errorcode.get(exc.errno or 0, exc.errno)} {exc.strerror or exc}"

    step("unshare_net", _unshare_network)
    # Address space: what the worker maps now plus the RSS budget plus headroom. The parent enforces
    # the RSS cap; this only stops one giant allocation between two of the parent's polls.
    vm_now = _vm_size_bytes()
    as_limit = vm_now + (memory_mb + 128) * 1024 * 1024
    limits = {
        "RLIMIT_CORE": (0, 0),
        "RLIMIT_FSIZE": (0, 0),
        "RLIMIT_NOFILE": (keep_fds, keep_fds),
        "RLIMIT_NPROC": (0, 0),
        "RLIMIT_AS": (as_limit, as_limit),
        "RLIMIT_CPU": (cpu_seconds, cpu_seconds + 5),
    }
    for name, value in limits.items():
        step(name, lambda n=name, v=value: resource.setrlimit(getattr(resource, n), v))

    if os.geteuid() == 0:

        def drop() -> None:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)

        step("drop_root", drop)
    # After the uid change (which clears it): if the kernel process dies, the worker dies with it
    # instead of spinning on until RLIMIT_CPU. Set late, so it also holds for the uid-dropped worker.
    step("parent_death_signal", _die_with_parent)
    step("seccomp", install_seccomp)
    return report
