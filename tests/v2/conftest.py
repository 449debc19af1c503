"""tests/v2 holds the cgroup v2 tier: the host harness (harness.py, vm.sh; the hog is tests/realkernel/hog.c) and,
in guest/, tests that only run inside the VM.  The host's pytest must not collect guest/ directly;
tests/test_v2_kernel.py runs it."""

collect_ignore = ["guest"]
