"""The kernel-log stream alone (oomtop.collect.kmsg_stream): a SOCK_SEQPACKET pair stands in for /dev/kmsg, which
also returns one record per read and EAGAIN when nothing is new."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from oomtop.collect import kmsg_stream
from oomtop.collect.kmsg_stream import KMSG_BATCH, QUIET_FLUSH_S, KernelLog, KmsgStream
from tests import kernlog

CTR = "/kubepods/burstable/podA/c1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Device:
    """The writing end of a fake /dev/kmsg, and a stream over its reading end."""

    def __init__(self) -> None:
        self.writer, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.stream = KmsgStream.from_fd(reader.detach())
        self.seq = 100

    def send(self, messages: list[str], start_us: int = 500_000_000) -> None:
        for offset, text in enumerate(messages):
            self.writer.send(f"6,{self.seq},{start_us + offset},-;{text}\n".encode())
            self.seq += 1

    def send_raw(self, raw: bytes) -> None:
        self.writer.send(raw)


@pytest.fixture
def device() -> Iterator[Device]:
    fake = Device()
    yield fake
    fake.writer.close()
    fake.stream.close()


def block(pid: int = 4242) -> list[str]:
    return kernlog.memcg_block((kernlog.Task(pid, comm="web", anon=12000, file=67),), oom_cgroup=CTR, limit_kb=51200)


# ---------------------------------------------------------------------------------------------- the stream


def test_one_record_per_read_until_nothing_is_new(device: Device) -> None:
    device.send(["first", "second"])
    records = device.stream.read()
    assert [(r.seq, r.kernel_time_us, r.text) for r in records] == [
        (100, 500_000_000, "first"),
        (101, 500_000_001, "second"),
    ]
    assert device.stream.read() == []  # EAGAIN, not a block
    assert device.stream.lost == 0


def test_a_sequence_gap_counts_the_records_lost(device: Device) -> None:
    device.send(["a"])
    device.seq += 3  # the ring buffer overwrote three records before we read them
    device.send(["b"])
    assert [r.text for r in device.stream.read()] == ["a", "b"]
    assert device.stream.lost == 3


def test_epipe_is_counted_and_reading_carries_on(device: Device, monkeypatch: pytest.MonkeyPatch) -> None:
    device.send(["after the overrun"])
    real_read = os.read
    calls = {"n": 0}

    def read_with_one_epipe(fd: int, size: int) -> bytes:
        calls["n"] += 1
        if calls["n"] == 1:
            raise BrokenPipeError
        return real_read(fd, size)

    monkeypatch.setattr(kmsg_stream.os, "read", read_with_one_epipe)
    assert [r.text for r in device.stream.read()] == ["after the overrun"]
    assert device.stream.lost == 1


def test_malformed_records_are_skipped(device: Device) -> None:
    device.send_raw(b"no header at all\n")
    device.send(["kept"])
    assert [r.text for r in device.stream.read()] == ["kept"]


def test_a_read_stops_at_its_limit_and_the_rest_stays_readable(device: Device) -> None:
    device.send([f"line {n}" for n in range(5)])
    assert len(device.stream.read(3)) == 3
    assert device.stream.readable()
    assert len(device.stream.read()) == 2
    assert not device.stream.readable()


def test_a_closed_stream_counts_as_readable(device: Device) -> None:
    device.stream.close()
    assert device.stream.readable()  # unknown: assume a record may wait


# ---------------------------------------------------------------------------------------- the log, parsed


def test_open_parses_the_ring_buffers_backlog(device: Device) -> None:
    device.send(["boot", *block(900)])  # nothing after the kill: the backlog's end completes it
    _, backlog = KernelLog.open(device.stream, Clock())
    assert [event.victim.pid for event in backlog] == [900]
    assert backlog[0].task_cgroup == CTR


def test_open_raises_when_the_log_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        KernelLog.open(str(tmp_path / "no-kmsg"))


def test_a_kill_is_complete_when_an_unrelated_record_follows(device: Device) -> None:
    clock = Clock()
    log, _ = KernelLog.open(device.stream, clock)
    device.send(block())
    assert log.read() == []  # its oom.group lines could still follow
    assert log.last_record_at == clock.now
    device.send(["unrelated"])
    assert [event.victim.pid for event in log.read()] == [4242]


def test_a_kill_is_flushed_once_the_log_is_quiet(device: Device) -> None:
    clock = Clock()
    log, _ = KernelLog.open(device.stream, clock)
    device.send(block())
    assert log.read() == []
    assert log.flush_if_quiet(clock.now + QUIET_FLUSH_S / 2) == []  # a group kill's next line may still come
    clock.now += QUIET_FLUSH_S * 1.5
    assert [event.victim.pid for event in log.flush_if_quiet(clock.now)] == [4242]


def test_a_burst_is_parsed_a_batch_at_a_time(device: Device) -> None:
    """In a burst the kernel writes as fast as we read: one call parses at most KMSG_BATCH records, so a
    finished kill goes out without waiting for the reader to catch up."""
    log, _ = KernelLog.open(device.stream, Clock())
    device.send(block(5000) + ["unrelated"] + [f"filler {n}" for n in range(2 * KMSG_BATCH)])
    assert [event.victim.pid for event in log.read()] == [5000]
    assert device.stream.last_seq == 100 + KMSG_BATCH - 1
    assert device.stream.readable()  # the rest waits for the next call


def test_settled_only_when_nothing_is_lost_unread_or_half_read(device: Device) -> None:
    clock = Clock()
    log, _ = KernelLog.open(device.stream, clock)
    device.send(block()[:3])  # a report begun, its kill not logged yet
    log.read()
    clock.now += 1
    assert not log.settled(clock.now, 0.005)  # half read
    device.send(["unrelated", *block()[3:], "unrelated"])
    log.read()
    log.flush_if_quiet(clock.now + 1)
    assert not log.settled(clock.now + 0.001, 0.005)  # a record came just now
    assert log.settled(clock.now + 0.01, 0.005)
    device.send(["waiting"])
    assert not log.settled(clock.now + 0.01, 0.005)  # unread
    log.read()
    device.seq += 1
    device.send(["after a gap"])
    log.read()
    assert not log.settled(clock.now + 1, 0.005)  # a record was lost: a report may be missing
