#!/bin/sh
# Capture what an enforcing SELinux hypervisor prints when a guest's disk is on NFS, into DIR:
# one file per command, as `# COMMAND`, its output (stdout and stderr together), `# rc=N`.
#   tests/data/selinux/capture.sh SSH_HOST DIR [SSH_OPTION...]
# e.g. against the lab's real-kernel host (python -m virtmig.lab up --real-kernel):
#   tests/data/selinux/capture.sh k1 tests/data/selinux/debian12-captured -F /var/lib/virtmig-lab/ssh_config
# The host needs SELinux enforcing, auditd, a kernel NFS server and client, libvirt and QEMU.
# Two phases, each a start of the domain with virt_use_nfs off (.before) and on (.after):
#   DIR/                    the host's policy as it is (Debian: libvirtd is denied at stat);
#   DIR/qemu-side-variant/  with virtmig/lab/qemu-side-variant.cil loaded (libvirtd may use NFS files, as on
#                           Fedora/RHEL), so QEMU is the one denied, at open.
# It changes the host and puts it back: /etc/exports (saved and restored), a mount of
# localhost:/srv/vm at /mnt/nfs, the domain nfstest (undefined at the end), the module
# virtmig_qemu_side (removed) and virt_use_nfs (set back to what it was, never with -P).
set -eu
host=$1; dir=$2; shift 2
ssh_options="$*"  # word-split on use: options without spaces inside them, e.g. -F FILE
module=$(dirname "$0")/../../../virtmig/lab/qemu-side-variant.cil
on_host() { ssh $ssh_options "$host" "$@"; }
cap() {  # cap FILE COMMAND: run COMMAND on the host, keep it and its output in $out/FILE
    file=$1; command=$2
    { echo "# $command"; on_host "$command" 2>&1 && rc=0 || rc=$?; echo "# rc=$rc"; } > "$out/$file"
}
v='virsh -c qemu:///system'
was=$(on_host 'getsebool virt_use_nfs' | awk '{print $3}')
on_host "cp -p /etc/exports /root/exports.before-capture; mkdir -p /srv/vm /mnt/nfs; cat > /root/nfstest.xml" <<'XML'
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
restore() {
    on_host "$v destroy nfstest >/dev/null 2>&1; $v undefine nfstest >/dev/null 2>&1;
             semodule -r virtmig_qemu_side >/dev/null 2>&1; setsebool virt_use_nfs $was;
             rm -f /mnt/nfs/test.img /root/nfstest.xml /root/virtmig_qemu_side.cil;
             umount /mnt/nfs; cp -p /root/exports.before-capture /etc/exports && exportfs -ra;
             rm -f /root/exports.before-capture" || true
}
trap restore EXIT

out=$dir; mkdir -p "$out"
cap sestatus.txt 'sestatus; getenforce; cat /proc/cmdline'
cap exportfs_-ra.txt 'echo "/srv/vm localhost(rw,sync,no_subtree_check,no_root_squash)" > /etc/exports; cat /etc/exports; exportfs -ra && exportfs -v'
cap mount_-t_nfs.txt 'mountpoint -q /mnt/nfs || mount -t nfs localhost:/srv/vm /mnt/nfs; findmnt /mnt/nfs'
cap qemu-img_create.txt 'rm -f /mnt/nfs/test.img; qemu-img create -f raw /mnt/nfs/test.img 64M && chown libvirt-qemu:libvirt-qemu /mnt/nfs/test.img'
cap virsh_define.txt "cat /root/nfstest.xml; $v define /root/nfstest.xml"
cap ls_-Z.txt 'ls -Zld /srv/vm /mnt/nfs /var/lib/libvirt/images; ls -Zl /mnt/nfs /srv/vm'
cap stat_-c_%C.txt 'stat -c "%C %U:%G %n" /mnt/nfs /mnt/nfs/test.img /srv/vm/test.img'

phase() {  # one start refused with virt_use_nfs off, one allowed with it on, into $out (made by the caller)
    cap local_config.txt 'semodule -l | grep -E "^(virtmig|lab)"; getsebool virt_use_execmem virt_use_nfs; grep ^namespaces /etc/libvirt/qemu.conf'
    cap setsebool_virt_use_nfs_0.txt 'setsebool virt_use_nfs 0'
    since=$(on_host 'date "+%x %T"')
    cap getsebool_virt_use_nfs.before.txt 'getsebool virt_use_nfs'
    cap virsh_start_--paused.before.txt "$v start --paused nfstest"
    # What the diagnosis runs (AVC_SCRIPT: -ts recent) would also show an earlier phase's denials; the
    # capture starts at this phase's own start.
    cap ausearch_-m_avc.before.txt "ausearch --input-logs -m avc -ts $since | tail -n 40"
    cap libvirt_qemu_log.before.txt 'tail -n 4 /var/log/libvirt/qemu/nfstest.log'
    cap stat_-c_%C.after-failed-start.txt 'stat -c "%C %U:%G %n" /mnt/nfs/test.img'
    cap setsebool_virt_use_nfs_1.txt 'setsebool virt_use_nfs 1'
    since=$(on_host 'date "+%x %T"')
    cap getsebool_virt_use_nfs.after.txt 'getsebool virt_use_nfs'
    cap virsh_start_--paused.after.txt "$v start --paused nfstest"
    cap virsh_domstate.after.txt "$v domstate --reason nfstest; $v list --all"
    cap ps_-eZ_qemu.after.txt 'ps -e -o label,user,pid,args | grep [q]emu-system | cut -c1-250'
    cap ausearch_-m_avc.after.txt "ausearch --input-logs -m avc -ts $since"
    cap virsh_destroy.txt "$v destroy nfstest"
}
phase
on_host 'cat > /root/virtmig_qemu_side.cil' < "$module"
out=$dir/qemu-side-variant
mkdir -p "$out"
cap semodule_-i.txt 'semodule -i /root/virtmig_qemu_side.cil && semodule -l | grep ^virtmig'
phase
cap semodule_-r.txt 'semodule -r virtmig_qemu_side'
