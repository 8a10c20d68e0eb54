#!/bin/busybox sh
# /init of the virtmig test guest (busybox sh, PID 1).
#
# Why so little: the guest exists only to be migrated.  It needs a NIC with a
# fixed address (the probe and the commands reach it by IP), the agent, and
# the first virtio disk; anything more (udev, DHCP, a distribution) would
# slow a TCG boot and add state that could differ between runs.
#
# Kernel arguments read here (see guest.py: guest_cmdline):
#   virtmig.ip=A.B.C.D/LEN   static address of eth0
#   virtmig.gw=A.B.C.D       default route (--guest-gateway); absent: none, the guest answers on-link only
#   virtmig.dirty=N          initial memory dirtying rate of the agent, MiB/s
#
# PID 1 must never exit (the kernel panics), so the script ends in a loop.

export PATH=/sbin:/bin:/usr/sbin:/usr/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1

log() { echo "virtmig-init: $*"; }

# Drivers, in dependency order (the list is written by guest.py).
for m in $(cat /etc/virtmig/modules); do
    insmod "/lib/modules/$m.ko" || log "insmod $m failed"
done

ip=
gw=
dirty=0
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        virtmig.ip=*) ip="${arg#virtmig.ip=}" ;;
        virtmig.gw=*) gw="${arg#virtmig.gw=}" ;;
        virtmig.dirty=*) dirty="${arg#virtmig.dirty=}" ;;
    esac
done

hostname virtmig-guest
ip link set lo up

# No IPv6: nothing in the lab uses it, and autoconf chatter would only add
# noise to the lab's links.
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null
echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 2>/dev/null

# virtio_net probes synchronously on insmod, but give it a moment anyway.
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
if [ -e /sys/class/net/eth0 ]; then
    echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6 2>/dev/null
    [ -n "$ip" ] && ip addr add "$ip" dev eth0
    ip link set eth0 up
    [ -n "$gw" ] && { ip route add default via "$gw" dev eth0 || log "default route via $gw failed"; }
    # Say where the address lives now, as a distribution's network set-up
    # does (gratuitous ARP): after a cold move, an offline migration or a
    # start on the other host, the bridges still send the guest's frames to
    # the port where they last saw it until it speaks (QEMU announces it only
    # after a live migration or a restore), and the controller's ARP entry
    # recovers on its own only after 20-40 s.
    [ -n "$ip" ] && arping -q -U -c 3 -I eth0 "${ip%/*}" &
else
    log "no eth0"
fi

# First virtio disk: mounted read-only when it carries ext2/3/4 (the ext4
# driver is only loaded then), left alone when blank.  Never mkfs: the
# agent's disk-write puts a raw pattern at offset 0 and the tests check it.
if [ -e /sys/block/vda ]; then
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 20 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    magic=$(dd if=/dev/vda bs=2 skip=540 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
    if [ "$magic" = "53ef" ]; then
        for m in $(cat /etc/virtmig/fs-modules); do
            insmod "/lib/modules/$m.ko" || log "insmod $m failed"
        done
        mkdir -p /mnt/vda
        mount -t ext4 -o ro /dev/vda /mnt/vda || log "mount /dev/vda failed"
    fi
fi

/sbin/virtmig-agent "$dirty" &

# Heartbeat on the console, once a second: uptime and eth0's packet counters.
# When the guest goes silent after a migration, the console log tells a hung
# guest (no ticks) from a network that no longer reaches it (ticks, rx flat)
# from an agent that stopped answering (rx rising, tx flat).
if [ -e /sys/class/net/eth0 ]; then
    stats=/sys/class/net/eth0/statistics
    while :; do
        read -r up _ < /proc/uptime
        echo "virtmig-tick up=$up rx=$(cat $stats/rx_packets) tx=$(cat $stats/tx_packets)"
        sleep 1
    done &
fi
log "up ip=${ip:-none} dirty=$dirty"

# Keep a shell on the console; pause between respawns so a console without
# input (EOF at once) cannot turn this into a busy loop.
while :; do
    setsid cttyhack sh
    sleep 1
done
