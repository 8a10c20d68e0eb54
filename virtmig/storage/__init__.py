"""Shared storage: the NFS export on a server (exports(5) or nfs-ganesha, one
translator between them), its mounts on the hosts, the qemu user who owns the
guest's files on it, the check that both hosts really see one store, and the
run's storage settings as values.  Imports only the base row: the transport
(`virtmig.host`), waiters and the settings checks (`virtmig.config`)."""
