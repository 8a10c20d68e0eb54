"""Migrating the guest and measuring it: the mode matrix as data, the runner
(libvirt-python), completed-job statistics, clock offsets, the measured hop,
offline moves, the criteria a hop is judged by, and the record it leaves."""
