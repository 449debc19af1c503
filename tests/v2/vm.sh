#!/usr/bin/env bash
# vm.sh: run a command inside a real cgroup v2 kernel (Debian's stock kernel under qemu), on this machine's own
# files -- oomtop's copy of the team's v2vm recipe, used by tests/test_v2_kernel.py.
#
# The guest sees the host's root as a copy-on-write overlay (writes vanish at exit), the current directory
# mounted read-write at the same path (results persist), cgroup2 at /sys/fs/cgroup with the memory and pids
# controllers enabled at the root, real root with every capability (oom_score_adj can go negative), swap off.
# With --swap MIB a scratch disk of that size is attached as /dev/vda (virtio): not turned on, so every test sees a
# node without swap unless it runs mkswap/swapon itself (guest/test_swap_v2.py does, and swapoff after).
# The guest inherits the caller's exported environment (through .v2vm/env in the current directory).
#
#   vm.sh [--mem MIB] [--cpus N] [--swap MIB] -- COMMAND [ARG...]      exit status: the command's
#   vm.sh --prepare                                       install + build only; 0 when ready
#
# Exit status 2 (with the reason on stderr, last line starting "vm.sh: cannot run:") means the tier cannot run
# on this machine (not Linux/x86_64, not root, nothing to install qemu or the kernel with); 3 means the guest did
# not finish (boot failure or timeout).
#
# First use installs qemu-system-x86, busybox-static, cpio and kmod from Debian (apt-get) and downloads the
# kernel package (about 70 MB) into the cache directory: $OOMTOP_V2VM_CACHE, else $V2VM_CACHE, else
# ${XDG_CACHE_HOME:-~/.cache}/oomtop-v2vm.  Boot takes about 10 s under software emulation; code runs about
# 20 times slower than on the host.  V2VM_TIMEOUT (seconds, default 1800) bounds a run; V2VM_ACCEL (default
# "tcg,thread=multi") is passed to qemu's -accel ("kvm" where nested virtualisation works).
set -euo pipefail
RECIPE=3  # bump when the initrd below changes: cached initrds of older recipes are rebuilt
mem=2048 cpus=2 swap=0 prepare=0
while [ $# -gt 0 ]; do
  case $1 in
    --mem) mem=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --swap) swap=$2; shift 2 ;;
    --prepare) prepare=1; shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done
cannot() { echo "vm.sh: cannot run: $*" >&2; exit 2; }
[ $prepare = 1 ] || [ $# -gt 0 ] || { echo "usage: vm.sh [--mem MIB] [--cpus N] -- COMMAND [ARG...] | vm.sh --prepare" >&2; exit 64; }
[ "$(uname -s)" = Linux ] || cannot "not Linux ($(uname -s))"
[ "$(uname -m)" = x86_64 ] || cannot "the guest runs the host's own x86_64 binaries; this machine is $(uname -m)"
[ "$(id -u)" = 0 ] || cannot "needs root (it installs packages and shares / with the guest); euid is $(id -u)"

cache=${OOMTOP_V2VM_CACHE:-${V2VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oomtop-v2vm}}
mkdir -p "$cache"
# One preparer at a time (two test sessions may start together); the lock is dropped before the boot.
if command -v flock >/dev/null 2>&1; then exec 9>"$cache/.lock"; flock 9; fi
need=()
for pair in qemu-system-x86_64:qemu-system-x86 busybox:busybox-static cpio:cpio depmod:kmod; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || [ -x "/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
done
# The initrd has no libc: a dynamically linked busybox (Debian's "busybox" package) cannot be its init.
if command -v busybox >/dev/null 2>&1 && command -v ldd >/dev/null 2>&1 && ldd "$(command -v busybox)" >/dev/null 2>&1; then
  need+=(busybox-static)
fi
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || cannot "missing ${need[*]} and no apt-get to install them"
  echo "vm.sh: installing ${need[*]}" >&2
  { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; } ||
    cannot "apt-get could not install ${need[*]}"
fi
depmod=$(command -v depmod || echo /usr/sbin/depmod)
mods="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci 9pnet 9pnet_virtio netfs fscache 9p overlay virtio_blk"

# The kernel: the version Debian's linux-image-amd64 points at, unpacked once.
if [ ! -f "$cache/kernel-ready" ]; then
  command -v apt-cache >/dev/null 2>&1 || cannot "no apt-cache to find Debian's kernel package (linux-image-amd64)"
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)
  [ -n "$pkg" ] || { apt-get update -qq >/dev/null || true; pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1); }
  [ -n "$pkg" ] || cannot "no Debian kernel package found (apt-cache depends linux-image-amd64)"
  echo "vm.sh: downloading $pkg into $cache" >&2
  rm -rf "$cache/k" "$cache/initrd-ready" && mkdir -p "$cache/k"
  (cd "$cache/k" && apt-get download "$pkg" >/dev/null 2>&1 && dpkg -x ./*.deb root && rm -f ./*.deb) ||
    cannot "could not download or unpack $pkg"
  kver=$(ls "$cache/k/root/lib/modules")
  "$depmod" -b "$cache/k/root" "$kver"
  cp "$cache/k/root/boot/vmlinuz-$kver" "$cache/vmlinuz"
  echo "$kver" >"$cache/kernel-ready"
fi
kver=$(cat "$cache/kernel-ready")

# The initrd: busybox, the virtio/9p/overlay modules and an init that builds the guest's root.
if [ "$(cat "$cache/initrd-ready" 2>/dev/null)" != "$RECIPE $kver" ]; then
  init=$cache/k/initrd
  rm -rf "$init" && mkdir -p "$init"/{bin,proc,sys,dev,lower,upper,host,mods}
  cp "$(command -v busybox)" "$init/bin/busybox"
  for m in $mods; do
    f=$(sed -n "s|^\(kernel/.*/$m\.ko[^:]*\):.*|\1|p" "$cache/k/root/lib/modules/$kver/modules.dep" | head -1)
    cp "$cache/k/root/lib/modules/$kver/$f" "$init/mods/$m.ko"
  done
  cat >"$init/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $mods; do insmod /mods/\$m.ko || echo "v2vm: insmod \$m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose hostroot /lower
mount -t tmpfs -o size=75% upper /upper; mkdir -p /upper/u /upper/w
mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w overlay /host
cwd=\$(sed -n 's/.* v2vm_cwd=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p "/host\$cwd"; mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 work "/host\$cwd"
for d in proc sys dev tmp run; do mkdir -p /host/\$d; done
mount -t proc proc /host/proc; mount -t sysfs sys /host/sys; mount -t devtmpfs dev /host/dev
mount -t devpts devpts /host/dev/pts 2>/dev/null; mount -t tmpfs tmp /host/run
mount -t cgroup2 none /host/sys/fs/cgroup
echo "+memory +pids" > /host/sys/fs/cgroup/cgroup.subtree_control
chroot /host /bin/bash -c "cd '\$cwd' && . ./.v2vm/env && bash ./.v2vm/cmd" </dev/console >/dev/console 2>&1
echo \$? > "/host\$cwd/.v2vm/rc"
sync; poweroff -f
INIT
  chmod +x "$init/init"
  (cd "$init" && find . | cpio -o -H newc 2>/dev/null | gzip -1 >"$cache/initrd.gz")
  echo "$RECIPE $kver" >"$cache/initrd-ready"
fi
[ $prepare = 0 ] || { echo "vm.sh: ready (kernel $kver, cache $cache)" >&2; exit 0; }
exec 9>&-

cwd=$(pwd -P)
case $cwd in *' '*) cannot "the current directory must not contain spaces ($cwd)" ;; esac
mkdir -p .v2vm
trap 'rm -rf "$cwd/.v2vm"' EXIT
export -p | grep -v -E ' (PWD|OLDPWD|SHLVL|_)=' >.v2vm/env
printf '%q ' "$@" >.v2vm/cmd
rm -f .v2vm/rc
disk=()
if [ "$swap" -gt 0 ]; then  # a sparse scratch file: the guest's swap device, gone with .v2vm at exit
  truncate -s "${swap}M" .v2vm/swap.img
  disk=(-drive "file=$cwd/.v2vm/swap.img,if=virtio,format=raw,cache=unsafe")
fi
status=
timeout --foreground "${V2VM_TIMEOUT:-1800}" qemu-system-x86_64 -accel "${V2VM_ACCEL:-tcg,thread=multi}" -m "$mem" -smp "$cpus" \
  -display none -vga none -serial stdio -monitor none -nic none -no-reboot "${disk[@]}" \
  -kernel "$cache/vmlinuz" -initrd "$cache/initrd.gz" \
  -append "console=ttyS0 loglevel=1 panic=-1 v2vm_cwd=$cwd" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$cwd",mount_tag=work,security_model=none,multidevs=remap </dev/null || status=$?
[ -f .v2vm/rc ] || { echo "vm.sh: the guest did not finish (boot failure or timeout; qemu exit status ${status:-0}, 124 = timeout)" >&2; exit 3; }
exit "$(cat .v2vm/rc)"
