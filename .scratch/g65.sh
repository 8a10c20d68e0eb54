#!/bin/sh
set -e
d=/srv/g65; mkdir -p $d/exp $d/vln
cat > $d/exports.conf <<'X'
EXPORT {
    Export_Id = 1;
    Path = /srv/g65/exp;
    Pseudo = /srv/g65/exp;
    Protocols = 3, 4;
    Access_Type = RW;
    Squash = root_squash;
    FSAL { Name = VFS; }
}
LOG {
    COMPONENTS {
        EXPORT = INFO;
    }
}
X
cat > $d/ganesha.conf <<'X'
NFS_CORE_PARAM {
    Bind_addr = 198.18.3.1;
    Protocols = 3, 4;
    Allow_Set_Io_Flusher_Fail = true;
}
NFSV4 { Graceless = true; }
%include "/srv/g65/exports.conf"
X
unshare --net --mount --propagation private sh -c '
ip link set lo up; ip link add vmt-gan type veth peer name vmt-gan-peer; ip addr add 198.18.3.1/32 dev vmt-gan; ip link set vmt-gan up
mount --bind /srv/g65/vln /var/lib/nfs; mount -t tmpfs tmpfs /run; mkdir -p /run/ganesha
rpcbind -f -w & rp=$!
sleep 0.5
ganesha.nfsd -F -L /dev/stderr -f /srv/g65/ganesha.conf -p /run/ganesha/ganesha.pid 2>/srv/g65/log & g=$!
sleep 2
echo "--- HUP" >> /srv/g65/log
kill -HUP $g; sleep 2
kill $g $rp; wait
' || true
grep -n "EXPORT :INFO\|Reread\|CRIT" $d/log | cut -c90-300 | tail -8; rm -rf $d
