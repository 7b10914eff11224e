"""Host settings: torch threads and glibc keeping freed blocks (reasonrl/utils/host.py)."""

import sys

import pytest
import torch

from reasonrl.utils.host import configure_host, keep_freed_blocks


def test_configure_host_sets_threads_and_keeps_none_by_default():
    before = torch.get_num_threads()
    try:
        configure_host(1, keep_freed_memory=False)
        assert torch.get_num_threads() == 1
        configure_host(None, keep_freed_memory=False)
        assert torch.get_num_threads() == 1  # None keeps torch's current count
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_glibc_takes_the_keep_freed_blocks_setting():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert keep_freed_blocks() is True


def test_checkpointing_on_a_cpu_turns_keeping_freed_blocks_off():
    from reasonrl.config import load_config

    assert load_config(None, []).keeps_freed_memory
    assert not load_config(None, ["keep_freed_memory=false"]).keeps_freed_memory
    assert not load_config(None, ["model.gradient_checkpointing=true"]).keeps_freed_memory
    assert load_config(None, ["model.gradient_checkpointing=true", "model.device=cuda"]).keeps_freed_memory


FRAGMENT = """
import sys, torch
from pathlib import Path
from reasonrl.utils.host import configure_host
configure_host(1, keep_freed_memory=sys.argv[1] == "keep")
def rss():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS"))
    return int(line.split()[1]) / 1024
base = rss()
kept = []
for layer in range(40):  # a checkpointed forward: per layer 8 MB of temporaries freed, 1 MB kept
    temps = [torch.ones(2**20) for _ in range(2)]
    kept.append(temps[0][: 2**18].clone())
    del temps
print(round(rss() - base))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_without_keeping_freed_blocks_resident_memory_follows_the_live_tensors():
    """40 x 1 MB stay alive; 320 MB were freed. Mapped on their own, the freed blocks leave the process."""
    import platform
    import subprocess

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    grown = {
        mode: int(
            subprocess.run([sys.executable, "-c", FRAGMENT, mode], capture_output=True, text=True, check=True).stdout
        )
        for mode in ("keep", "lean")
    }
    assert grown["lean"] < 80, grown  # the live 40 MB and some slack
