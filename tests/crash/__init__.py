"""Crash-state exploration of `cpoplib fetch --delete`.

Kill-and-rerun tests cannot tell a synced batch from an unsynced one: a
killed process leaves its writes in the page cache, and the rerun reads
them back.  Here the file-system operations of the fetcher are recorded
(strace; see trace.py), and every on-disk state that a crash of the
machine could leave at every point is built under the persistence model
below, put in a directory, and handed to the next `cpoplib fetch`, whose
result is checked (explore.py).  test_crash_states.py runs it and, for
every sync site of cpoplib.fetch.durable, shows that without that one
sync some crash state loses or duplicates mail.

The persistence model
---------------------

What survives a crash of the machine (power loss, kernel panic) at a
point of the trace:

1. Every operation made durable before the point: a write or truncation
   of a file by an fsync/fdatasync of that file; a directory change by an
   fsync of that directory: a file created, a directory made, a hard link
   or an unlink by an fsync of the directory holding the name, a rename
   by an fsync of its destination directory; anything at all by a
   syncfs(2) (a barrier for the whole file system).  An fsync of a file
   does not make its name durable, and an fsync of a directory makes
   none of its files' data durable.

2. Of the operations not yet durable, any of the following, each
   independently of the others:

   * each file's data: the state at its last sync followed by any prefix
     of the writes and truncations since (a file's data is never seen
     with a later write and without an earlier one), the last write of
     the prefix possibly torn: only its first half, or its full length
     of zeros;
   * each directory change, on its own: kept or lost (directories are not
     ordered with one another, nor with the files' data).

3. Some things are always atomic: a rename (the name is never in both
   places or in neither), a single directory change, the creation of an
   empty file.

This is weaker than ext4 or XFS with their one journal, where an fsync of
anything commits every earlier change of metadata; it is what the
fetcher's protocol claims to need (README, "The fetcher"), so every sync
in it must matter under it.

Which states are built
----------------------

All the subsets of item 2 are far too many; at every point (between any
two operations of the recorded runs, and at the end of each), with V the
operations not durable there:

* everything in V kept (what a kill -9 leaves), and everything lost;
* for each directory change in V: all kept but it, and all lost but it;
* for each file with data in V and each n: its unsynced data cut after
  its n-th change (the others all kept, or all lost); and the same with
  that n-th write torn, half or zeros.

States that come out alike (same names, same bytes, same hard links,
same server mailbox) are checked once.  The server's mailbox at a point
is the one before the run, less what its QUIT expunged if the QUIT was
sent before the point (tests/crash/server.py expunges at QUIT).
"""
