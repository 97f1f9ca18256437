"""``pydfs mount``: the file system as a local directory, through FUSE (``pydfs[mount]``).

``service`` mounts and serves; ``operations`` answers the kernel; ``inodes`` numbers paths and
caches their attributes; ``identity`` maps owners to local ids; ``reading`` serves reads with
read-ahead; ``writeback`` (with ``stream`` and ``spill``) turns writes into uploads.
"""
