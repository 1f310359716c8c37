"""glibc's malloc told to keep freed memory (``vidseg.accel.keep_freed_memory``): each step's large
tensors reuse the last step's pages instead of faulting in fresh ones, in a real process."""

import subprocess
import sys
import textwrap

import pytest

# 20 steps of a 64 MiB tensor made and freed (above glibc's largest mmap threshold, 32 MiB, as a
# batch's one-hot clips or a video's UNet logits are); prints the process's minor page faults.
STEPS = textwrap.dedent("""
    import sys
    import torch
    if sys.argv[1] == "kept":
        from vidseg.accel import keep_freed_memory
        assert keep_freed_memory()
    def faults():
        return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])
    torch.ones(1 << 24).sum()
    before = faults()
    for _ in range(20):
        torch.ones(1 << 24).sum()  # 64 MiB, freed at once
    print(faults() - before)
""")


def _faults(kind: str) -> int:
    done = subprocess.run([sys.executable, "-c", STEPS, kind], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and /proc: Linux")
def test_freed_tensors_pages_are_reused_not_faulted_in_again():
    default, kept = _faults("default"), _faults("kept")
    assert default > 20 * 16384 * 0.9  # each step faults in its 16,384 pages of 4 KiB again
    # the first steps' pages serve the later ones: on the Zen 4 VM 1 to 5 steps' faults of 20 (16,384-81,920; its
    # host takes back some idle pages), where the default faults in every step's
    assert kept < default / 2
