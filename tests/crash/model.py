"""The file system as the crash exploration sees it: the operations of a
recorded trace (tests/crash/trace.py) turned into changes of inodes and
directories, which sync makes each durable, the crash states a crash at
any point may leave under the persistence model (tests/crash/__init__.py),
and their materialisation into a real directory.

Everything happens under one root directory ``root`` (the run's files:
state, destination); calls on other paths (the interpreter's imports,
/dev/null) are ignored.  The root itself exists and is durable before the
first operation.

Operations (``Op``):

``data``    a write (offset, bytes) or a truncation (size) of a file
``entry``   a directory change: ``add`` (a file created, a directory
            made, a hard link), ``remove`` (unlink, rmdir) or ``rename``
            (atomic: the name leaves its source and appears in its
            destination as one change)
``fsync``   fsync or fdatasync of a file or directory
``barrier`` syncfs(2) or sync(2): everything before is durable
``quit``    the fetcher sent QUIT (the server expunges when it gets it)
``run``     a new fetcher process starts (no effect on durability: the
            previous process's unsynced changes stay unsynced)
"""
import hashlib
import os
import posixpath
import shutil

ROOT = 0
INF = float("inf")


class Unsupported(Exception):
    """The trace does something to a tracked file that the model does
    not know how to replay; better to refuse than to miss a change."""


class Op:
    __slots__ = ("index", "kind", "ino", "detail", "dirs", "what",
                 "synced_by")

    def __init__(self, kind, ino=None, detail=None, dirs=(), what=""):
        self.kind = kind
        self.ino = ino            # data/fsync: the inode
        self.detail = detail      # data: ("write", off, bytes) |
        #                           ("trunc", size); entry: the change
        self.dirs = dirs          # entry: the directories it changes
        self.what = what          # for people: the call and its paths
        self.index = None
        self.synced_by = INF      # index of the sync that makes it durable

    def __repr__(self):
        return "#%d %s" % (self.index, self.what)


class _Desc:
    """An open file description (shared by dup'd descriptors)."""
    __slots__ = ("ino", "offset", "append")

    def __init__(self, ino, append):
        self.ino, self.offset, self.append = ino, 0, append


class Trace:
    """The operations of one or more fetcher processes run one after
    another on `root`, with the live file system they produce."""

    def __init__(self, root, cwd, on_write=None):
        self.root = os.path.abspath(root)
        self.on_write = on_write      # on_write(trace, ino, bytes)
        self.cwd = os.path.abspath(cwd)
        self.ops = []
        self.kinds = {ROOT: "dir"}          # ino -> "dir" | "file"
        self.entries = {ROOT: {}}           # dir ino -> {name: ino}
        self.data = {}                      # file ino -> bytearray
        self.identities = {}                # ino -> (st_ino, mtime_ns)
        self._next = 1
        self._fds = {}                      # (pid, fd) -> _Desc

    # ---- building: system calls to operations ----

    def new_run(self, label):
        self._fds = {}
        self._emit(Op("run", what="run %s" % label))

    def add_calls(self, calls):
        for call in calls:
            if call.ret is None or call.ret < 0:
                continue                    # failed: changed nothing
            handler = getattr(self, "_sys_" + call.name, None)
            if handler is None:
                continue
            try:
                handler(call, *call.args)
            except Unsupported:
                raise
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise Unsupported("cannot replay %s: %r" % (call.line, exc))

    def _emit(self, op):
        op.index = len(self.ops)
        self.ops.append(op)
        return op

    def _rel(self, d, name=None):
        parts = []
        ino = d
        while ino != ROOT:
            parent, pname = self._parent[ino]
            parts.append(pname)
            ino = parent
        parts.reverse()
        if name is not None:
            parts.append(name)
        return "/".join(parts) or "."

    @property
    def _parent(self):
        found = {}
        for d, ents in self.entries.items():
            for name, ino in ents.items():
                if self.kinds[ino] == "dir":
                    found[ino] = (d, name)
        return found

    def _resolve(self, pid, dirfd, path):
        """(directory ino, last name) of a path, or None outside the
        root; name None for the root itself."""
        if isinstance(path, bytes):
            path = path.decode("utf-8", "surrogateescape")
        if path.startswith("/"):
            base = None
        elif dirfd == -100:
            path = posixpath.join(self.cwd, path)
            base = None
        else:
            desc = self._fds.get((pid, dirfd))
            if desc is None:
                return None
            base = desc.ino
        if base is None:
            path = posixpath.normpath(path)
            if path == self.root:
                return ROOT, None
            if not path.startswith(self.root + "/"):
                return None
            parts = path[len(self.root) + 1:].split("/")
            base = ROOT
        else:
            parts = [p for p in path.split("/") if p not in ("", ".")]
            if ".." in parts:
                raise Unsupported("'..' relative to a descriptor: %r" % path)
            if not parts:
                return base, None
        for comp in parts[:-1]:
            base = self.entries[base][comp]
        return base, parts[-1]

    def _lookup(self, where):
        d, name = where
        return d if name is None else self.entries[d].get(name)

    def _new(self, kind):
        ino = self._next
        self._next += 1
        self.kinds[ino] = kind
        if kind == "dir":
            self.entries[ino] = {}
        else:
            self.data[ino] = bytearray()
        return ino

    def _tracked(self, call, fd):
        return self._fds.get((call.pid, fd))

    def _open(self, call, dirfd, path, flags, fd):
        where = self._resolve(call.pid, dirfd, path)
        self._fds.pop((call.pid, fd), None)
        if where is None:
            return
        if "O_TMPFILE" in flags:
            raise Unsupported(call.line)
        ino = self._lookup(where)
        if ino is None:
            if "O_CREAT" not in flags:
                raise Unsupported("opened a name the model lacks: %s"
                                  % call.line)
            ino = self._new("file")
            d, name = where
            self.entries[d][name] = ino
            self._emit(Op("entry", detail=("add", d, name, ino), dirs=(d,),
                          what="create %s" % self._rel(d, name)))
        elif "O_TRUNC" in flags and self.kinds[ino] == "file" \
                and ("O_WRONLY" in flags or "O_RDWR" in flags):
            self._data(ino, ("trunc", 0), "O_TRUNC")
        self._fds[(call.pid, fd)] = _Desc(ino, "O_APPEND" in flags)

    def _sys_openat(self, call, dirfd, path, flags, *mode):
        self._open(call, dirfd, path, flags, call.ret)

    def _sys_open(self, call, path, flags, *mode):
        self._open(call, -100, path, flags, call.ret)

    def _sys_creat(self, call, path, mode):
        self._open(call, -100, path, "O_CREAT|O_WRONLY|O_TRUNC", call.ret)

    def _sys_openat2(self, call, *args):
        if self._resolve(call.pid, args[0], args[1]) is not None:
            raise Unsupported(call.line)

    def _sys_close(self, call, fd):
        self._fds.pop((call.pid, fd), None)

    def _dup(self, call, old, new):
        desc = self._tracked(call, old)
        self._fds.pop((call.pid, new), None)
        if desc is not None:
            self._fds[(call.pid, new)] = desc

    def _sys_dup(self, call, old):
        self._dup(call, old, call.ret)

    def _sys_dup2(self, call, old, new):
        self._dup(call, old, new)

    def _sys_dup3(self, call, old, new, flags):
        self._dup(call, old, new)

    def _sys_fcntl(self, call, fd, cmd, *rest):
        if cmd in ("F_DUPFD", "F_DUPFD_CLOEXEC"):
            self._dup(call, fd, call.ret)

    def _sys_lseek(self, call, fd, offset, whence):
        desc = self._tracked(call, fd)
        if desc is not None and call.ret >= 0:
            desc.offset = call.ret

    def _data(self, ino, detail, how):
        live = self.data[ino]
        if detail[0] == "write":
            _, off, buf = detail
            if off > len(live):
                live.extend(bytes(off - len(live)))
            live[off:off + len(buf)] = buf
            what = "%s %d bytes at %d of %s" % (how, len(buf), off,
                                                self._path_of(ino))
            if self.on_write is not None:
                self.on_write(self, ino, buf)
        else:
            size = detail[1]
            del live[size:]
            live.extend(bytes(size - len(live)))
            what = "truncate %s to %d (%s)" % (self._path_of(ino), size, how)
        self._emit(Op("data", ino=ino, detail=detail, what=what))

    def _path_of(self, ino):
        for d, ents in self.entries.items():
            for name, i in ents.items():
                if i == ino:
                    return self._rel(d, name)
        return "(inode %d, no name)" % ino

    def _write(self, call, fd, buf, offset=None):
        desc = self._tracked(call, fd)
        if desc is None:
            if isinstance(buf, bytes) and (buf.startswith(b"QUIT\r\n")
                                           or b"\r\nQUIT\r\n" in buf):
                self._emit(Op("quit", what="QUIT sent"))
            return
        buf = buf[:call.ret]
        if offset is None:
            offset = len(self.data[desc.ino]) if desc.append \
                else desc.offset
            desc.offset = offset + len(buf)
        self._data(desc.ino, ("write", offset, bytes(buf)), call.name)

    def _sys_write(self, call, fd, buf, count):
        self._write(call, fd, buf)

    def _sys_pwrite64(self, call, fd, buf, count, offset):
        self._write(call, fd, buf, offset)

    def _sys_sendto(self, call, fd, buf, *rest):
        self._write(call, fd, buf)

    def _sys_sendmsg(self, call, fd, msg, *rest):
        if b"QUIT\r\n" in call.line.encode():     # never on a file
            self._emit(Op("quit", what="QUIT sent"))

    def _refuse_on_fd(self, call, fd, *rest):
        if self._tracked(call, fd) is not None:
            raise Unsupported(call.line)

    _sys_writev = _sys_pwritev = _sys_pwritev2 = _refuse_on_fd
    _sys_fallocate = _sys_sync_file_range = _refuse_on_fd

    def _sys_copy_file_range(self, call, fd_in, off_in, fd_out, *rest):
        self._refuse_on_fd(call, fd_out)

    def _sys_sendfile(self, call, out_fd, *rest):
        self._refuse_on_fd(call, out_fd)

    def _sys_splice(self, call, fd_in, off_in, fd_out, *rest):
        self._refuse_on_fd(call, fd_out)

    def _sys_mmap(self, call, addr, length, prot, flags, fd, *rest):
        if "MAP_SHARED" in str(flags) and "PROT_WRITE" in str(prot):
            self._refuse_on_fd(call, fd)

    def _sys_ftruncate(self, call, fd, size):
        desc = self._tracked(call, fd)
        if desc is not None:
            self._data(desc.ino, ("trunc", size), "ftruncate")

    def _sys_truncate(self, call, path, size):
        where = self._resolve(call.pid, -100, path)
        if where is not None:
            self._data(self._lookup(where), ("trunc", size), "truncate")

    def _sync(self, call, fd, how):
        desc = self._tracked(call, fd)
        if desc is not None:
            ino = desc.ino
            self._emit(Op("fsync", ino=ino, what="%s %s" % (
                how, self._path_of(ino) if ino != ROOT else ".")))

    def _sys_fsync(self, call, fd):
        self._sync(call, fd, "fsync")

    def _sys_fdatasync(self, call, fd):
        self._sync(call, fd, "fdatasync")

    def _sys_syncfs(self, call, fd):
        if self._tracked(call, fd) is None:
            raise Unsupported("syncfs of a descriptor outside the root: %s"
                              % call.line)
        self._emit(Op("barrier", what="syncfs"))

    def _sys_sync(self, call):
        self._emit(Op("barrier", what="sync"))

    def _rename(self, call, odir, old, ndir, new, flags="0"):
        src = self._resolve(call.pid, odir, old)
        dst = self._resolve(call.pid, ndir, new)
        if src is None and dst is None:
            return
        if src is None or dst is None or flags not in ("0", 0,
                                                       "RENAME_NOREPLACE"):
            raise Unsupported(call.line)
        ino = self._lookup(src)
        (sd, sn), (dd, dn) = src, dst
        del self.entries[sd][sn]
        self.entries[dd][dn] = ino
        self._emit(Op("entry", detail=("rename", sd, sn, dd, dn, ino),
                      dirs=tuple({sd, dd}), what="rename %s -> %s" % (
                          self._rel(sd, sn), self._rel(dd, dn))))

    def _sys_rename(self, call, old, new):
        self._rename(call, -100, old, -100, new)

    def _sys_renameat(self, call, odir, old, ndir, new):
        self._rename(call, odir, old, ndir, new)

    def _sys_renameat2(self, call, odir, old, ndir, new, flags):
        self._rename(call, odir, old, ndir, new, flags)

    def _remove(self, call, dirfd, path):
        where = self._resolve(call.pid, dirfd, path)
        if where is None:
            return
        d, name = where
        ino = self.entries[d].pop(name)
        self._emit(Op("entry", detail=("remove", d, name, ino), dirs=(d,),
                      what="unlink %s" % self._rel(d, name)))

    def _sys_unlink(self, call, path):
        self._remove(call, -100, path)

    def _sys_rmdir(self, call, path):
        self._remove(call, -100, path)

    def _sys_unlinkat(self, call, dirfd, path, flags):
        self._remove(call, dirfd, path)

    def _mkdir(self, call, dirfd, path):
        where = self._resolve(call.pid, dirfd, path)
        if where is None:
            return
        d, name = where
        ino = self._new("dir")
        self.entries[d][name] = ino
        self._emit(Op("entry", detail=("add", d, name, ino), dirs=(d,),
                      what="mkdir %s" % self._rel(d, name)))

    def _sys_mkdir(self, call, path, mode):
        self._mkdir(call, -100, path)

    def _sys_mkdirat(self, call, dirfd, path, mode):
        self._mkdir(call, dirfd, path)

    def _link(self, call, odir, old, ndir, new):
        src = self._resolve(call.pid, odir, old)
        dst = self._resolve(call.pid, ndir, new)
        if src is None and dst is None:
            return
        if src is None or dst is None:
            raise Unsupported(call.line)
        ino = self._lookup(src)
        d, name = dst
        self.entries[d][name] = ino
        self._emit(Op("entry", detail=("add", d, name, ino), dirs=(d,),
                      what="link %s -> %s" % (self._rel(*src),
                                              self._rel(d, name))))

    def _sys_link(self, call, old, new):
        self._link(call, -100, old, -100, new)

    def _sys_linkat(self, call, odir, old, ndir, new, flags):
        self._link(call, odir, old, ndir, new)

    def _refuse_path(self, call, *args):
        for a in args:
            if isinstance(a, bytes) and self._resolve(call.pid, -100, a):
                raise Unsupported(call.line)

    _sys_symlink = _refuse_path

    def _sys_symlinkat(self, call, target, dirfd, path):
        if self._resolve(call.pid, dirfd, path) is not None:
            raise Unsupported(call.line)

    def _sys_chdir(self, call, path):
        raise Unsupported("the fetcher changed directory: %s" % call.line)

    _sys_fchdir = _sys_chdir

    # ---- what the files record of inode identities ----

    def note_identity(self, path, st_ino, mtime_ns):
        """The live file at `path` (absolute) is the one a record names
        by (st_ino, mtime_ns) -- the mbox's dot lock in the state; the
        materialised copy gets a new inode number, which materialise()
        translates."""
        where = self._resolve(None, -100, path.encode())
        ino = self._lookup(where) if where else None
        if ino is not None:
            self.identities[ino] = (st_ino, mtime_ns)

    # ---- durability ----

    def finish(self):
        """Compute, for every operation, the sync that makes it durable
        (Op.synced_by; INF: none in the trace)."""
        waiting = []            # ops not yet durable
        for op in self.ops:
            if op.kind == "barrier":
                for w in waiting:
                    w.synced_by = op.index
                waiting = []
            elif op.kind == "fsync":
                still = []
                for w in waiting:
                    if (w.kind == "data" and w.ino == op.ino) or (
                            w.kind == "entry" and _durable_in(w) == op.ino):
                        w.synced_by = op.index
                    else:
                        still.append(w)
                waiting = still
            elif op.kind in ("data", "entry"):
                waiting.append(op)
        return self

    def live_tree(self):
        """{relative path: None (a directory) | bytes} of the live file
        system after the last operation."""
        return _tree(self.entries, lambda ino: bytes(self.data[ino]),
                     self.kinds)[0]


def _durable_in(op):
    """The directory whose fsync makes an entry change durable: the one
    holding the new name (a rename's destination; its source side goes
    with it, a rename being atomic), or the one a name left."""
    change = op.detail
    return change[3] if change[0] == "rename" else change[1]


def _tree(entries, content, kinds):
    """Walk from the root: ({path: None | bytes}, {path: ino})."""
    tree, inos = {}, {}
    todo = [(ROOT, "")]
    seen = {ROOT}
    while todo:
        d, prefix = todo.pop()
        for name in sorted(entries.get(d, {})):
            ino = entries[d][name]
            path = prefix + name
            if kinds[ino] == "dir":
                if ino in seen:
                    continue            # a directory under two names
                seen.add(ino)
                tree[path] = None
                inos[path] = ino
                todo.append((ino, path + "/"))
            else:
                tree[path] = content(ino)
                inos[path] = ino
    return tree, inos


# --------------------------------------------------------------------------
# crash states

class CrashState:
    """What the disk holds after a crash at `point` (after ops[:point]):
    every durable operation, and of the others those `keep` says;
    `torn` = (op index, "half" | "zeros") for a write applied in part."""

    def __init__(self, trace, point, label, keep, torn=None):
        self.trace, self.point, self.label = trace, point, label
        self.keep = keep            # predicate on an op index
        self.torn = torn
        self._files = None

    def describe(self):
        ops = self.trace.ops
        last = ops[self.point - 1] if self.point else None
        return "crash after %s: %s" % (last if last else "nothing",
                                       self.label)

    def _result(self):
        if self._files is None:
            self._files = _apply(self.trace, self.point, self.keep,
                                 self.torn)
        return self._files

    def tree(self):
        return self._result()[0]

    def key(self):
        tree, inos = self._result()
        # hard links (one inode, two names) are part of the state
        first = {}
        for path in sorted(inos):
            first.setdefault(inos[path], path)
        h = hashlib.sha256()
        for path in sorted(tree):
            data = tree[path]
            h.update(path.encode() + b"\0")
            if data is None:
                h.update(b"d\0")
            else:
                h.update(b"f%d\0" % len(data) + hashlib.sha256(data).digest()
                         + first[inos[path]].encode() + b"\0")
        return h.hexdigest()

    def materialise(self, root):
        """Make `root` hold this state (it is emptied first).  Returns
        {recorded st_ino: new st_ino} for the inodes whose identity a
        record names (see Trace.note_identity)."""
        tree, inos = self._result()
        shutil.rmtree(root, ignore_errors=True)
        os.mkdir(root, 0o700)
        made = {}
        translated = {}
        for path in sorted(tree, key=lambda p: (p.count("/"), p)):
            full = os.path.join(root, path)
            data = tree[path]
            ino = inos[path]
            if data is None:
                os.mkdir(full, 0o700)
            elif ino in made:
                os.link(made[ino], full)
            else:
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o600)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
                made[ino] = full
                ident = self.trace.identities.get(ino)
                if ident is not None:
                    os.utime(full, ns=(ident[1], ident[1]))
                    translated[ident[0]] = os.stat(full).st_ino
        return translated


def _apply(trace, point, keep, torn):
    ops = trace.ops
    entries = {ROOT: {}}
    for ino, kind in trace.kinds.items():
        if kind == "dir":
            entries[ino] = {}
    data = {}
    for op in ops[:point]:
        if op.synced_by >= point and not keep(op.index):
            continue
        if op.kind == "entry":
            change = op.detail
            if change[0] == "add":
                _, d, name, ino = change
                entries[d][name] = ino
            elif change[0] == "remove":
                _, d, name, ino = change
                if entries[d].get(name) == ino:
                    del entries[d][name]
            else:
                _, sd, sn, dd, dn, ino = change
                if entries[sd].get(sn) == ino:
                    del entries[sd][sn]
                entries[dd][dn] = ino
        elif op.kind == "data":
            buf = data.setdefault(op.ino, bytearray())
            detail = op.detail
            if detail[0] == "write":
                _, off, chunk = detail
                if torn and torn[0] == op.index:
                    chunk = (chunk[:len(chunk) // 2] if torn[1] == "half"
                             else bytes(len(chunk)))
                if off > len(buf):
                    buf.extend(bytes(off - len(buf)))
                buf[off:off + len(chunk)] = chunk
            else:
                del buf[detail[1]:]
                buf.extend(bytes(detail[1] - len(buf)))
    return _tree(entries, lambda ino: bytes(data.get(ino, b"")),
                 trace.kinds)


def crash_states(trace, point):
    """The crash states explored at `point`: the bounded enumeration of
    tests/crash/__init__.py.  Yields CrashState objects (not deduplicated;
    many are alike)."""
    ops = trace.ops[:point]
    volatile = [op for op in ops if op.synced_by >= point
                and op.kind in ("data", "entry")]
    vset = {op.index for op in volatile}
    entry_ops = [op.index for op in volatile if op.kind == "entry"]
    per_file = {}
    for op in volatile:
        if op.kind == "data":
            per_file.setdefault(op.ino, []).append(op)

    def state(label, keep, torn=None):
        return CrashState(trace, point, label, keep, torn)

    yield state("every unsynced change kept (as after kill -9)",
                lambda i: True)
    if not vset:
        return
    yield state("every unsynced change lost", lambda i: False)
    for i in entry_ops:
        what = trace.ops[i].what
        yield state("all kept but %s" % what,
                    lambda j, i=i: j != i)
        yield state("all lost but %s" % what,
                    lambda j, i=i: j == i)
    for ino, fops in per_file.items():
        name = trace._path_of(ino)
        idx = [op.index for op in fops]
        for n in range(len(idx)):
            # the file's unsynced data cut after its n-th unsynced change
            cut = set(idx[n:])
            kept = set(idx[:n])
            yield state("all kept but the last %d unsynced writes of %s"
                        % (len(idx) - n, name),
                        lambda j, cut=cut: j not in cut)
            yield state("all lost but the first %d unsynced writes of %s"
                        % (n + 1, name),
                        lambda j, k=kept | {idx[n]}: j in k)
            if fops[n].detail[0] == "write" and len(fops[n].detail[2]) > 1:
                for how in ("half", "zeros"):
                    yield state("all kept, %s cut after its unsynced write "
                                "#%d, that one torn (%s)" % (name, n + 1,
                                                             how),
                                lambda j, cut=set(idx[n + 1:]): j not in cut,
                                (idx[n], how))
                    yield state("all lost but %s up to its unsynced write "
                                "#%d, that one torn (%s)" % (name, n + 1,
                                                             how),
                                lambda j, k=kept | {idx[n]}: j in k,
                                (idx[n], how))
