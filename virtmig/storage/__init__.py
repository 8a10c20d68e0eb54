"""Shared storage: the NFS export on a server (exports(5) or nfs-ganesha), its
mounts on the hosts, the guest's files on it, and the check that both hosts
really see one store.  Imports only the transport (`virtmig.host`) and waiters."""
