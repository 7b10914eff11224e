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
