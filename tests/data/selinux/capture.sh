#!/bin/sh
# Capture what an enforcing SELinux hypervisor prints when a guest's disk is on NFS, into DIR:
# one file per command, as `# COMMAND`, its output (stdout and stderr together), `# rc=N`.
#   tests/data/selinux/capture.sh SSH_HOST DIR [SSH_OPTION...]
# The host needs SELinux enforcing, auditd, a kernel NFS server and client, libvirt and QEMU
# (debian12-captured/ came from a Debian 12 VM host so built: ../shared/SELINUX-HOST-NOTES.md).
# It changes the host: /etc/exports, a mount of localhost:/srv/vm at /mnt/nfs, the domain
# nfstest (undefined at the end) and virt_use_nfs (set back to off, never with -P).
set -eu
host=$1; dir=$2; shift 2
ssh_options="$*"  # word-split on use: options without spaces inside them, e.g. -F FILE
mkdir -p "$dir"
on_host() { ssh $ssh_options "$host" "$@"; }
cap() {  # cap FILE COMMAND: run COMMAND on the host, keep it and its output in DIR/FILE
    file=$1; command=$2
    { echo "# $command"; on_host "$command" 2>&1 && rc=0 || rc=$?; echo "# rc=$rc"; } > "$dir/$file"
}
v='virsh -c qemu:///system'
on_host "mkdir -p /srv/vm /mnt/nfs; setsebool virt_use_nfs 0; cat > /root/nfstest.xml" <<'XML'
<domain type='qemu'>
  <name>nfstest</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/mnt/nfs/test.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
XML
cap sestatus.txt 'sestatus; getenforce; cat /proc/cmdline'
cap local_config.txt 'semodule -l | grep -E "^lab"; getsebool virt_use_execmem virt_use_nfs; grep ^namespaces /etc/libvirt/qemu.conf'
cap exportfs_-ra.txt 'echo "/srv/vm localhost(rw,sync,no_subtree_check,no_root_squash)" > /etc/exports; cat /etc/exports; exportfs -ra && exportfs -v'
cap mount_-t_nfs.txt 'mountpoint -q /mnt/nfs || mount -t nfs localhost:/srv/vm /mnt/nfs; findmnt /mnt/nfs'
cap qemu-img_create.txt 'rm -f /mnt/nfs/test.img; qemu-img create -f raw /mnt/nfs/test.img 64M && chown libvirt-qemu:libvirt-qemu /mnt/nfs/test.img'
cap virsh_define.txt "cat /root/nfstest.xml; $v define /root/nfstest.xml"
cap ls_-Z.txt 'ls -Zld /srv/vm /mnt/nfs /var/lib/libvirt/images; ls -Zl /mnt/nfs /srv/vm'
cap stat_-c_%C.txt 'stat -c "%C %U:%G %n" /mnt/nfs /mnt/nfs/test.img /srv/vm/test.img'
cap getsebool_virt_use_nfs.before.txt 'getsebool virt_use_nfs'
cap virsh_start_--paused.before.txt "$v start --paused nfstest"
cap ausearch_-m_avc_-ts_recent.literal.before.txt 'ausearch --input-logs -m avc -ts recent | tail -n 40'
cap libvirt_qemu_log.before.txt 'tail -n 4 /var/log/libvirt/qemu/nfstest.log'
cap setsebool_virt_use_nfs_1.txt 'setsebool virt_use_nfs 1'
cap getsebool_virt_use_nfs.after.txt 'getsebool virt_use_nfs'
cap virsh_start_--paused.after.txt "$v start --paused nfstest"
cap virsh_domstate.after.txt "$v domstate --reason nfstest; $v list --all"
cap ps_-eZ_qemu.after.txt 'ps -e -o label,user,pid,args | grep [q]emu-system | cut -c1-250'
cap ausearch_-m_avc_-ts_recent.after.txt 'ausearch --input-logs -m avc -ts recent'
cap virsh_destroy.txt "$v destroy nfstest"
on_host "$v undefine nfstest; setsebool virt_use_nfs 0; rm -f /mnt/nfs/test.img; umount /mnt/nfs" || true
