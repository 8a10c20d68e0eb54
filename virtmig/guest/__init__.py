"""The test guest: its image build, its libvirt XML, its lifecycle on a
connection, the agent client, the reachability probe, the integrity patterns
and the console log.  Used on real hosts and the lab alike."""
