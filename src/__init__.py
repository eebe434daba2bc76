"""lstm-sentiment: a bidirectional-LSTM sentiment classifier for IMDB reviews."""

import os

__version__ = "0.1.0"

# Transparent huge pages for PyTorch's CPU buffers of 2 MB or more. A training step frees and reallocates
# such buffers many times (the LSTM's gate buffers of a batch of long reviews are about 50 MB), and the
# kernel maps and zeroes each one again; with huge pages it does so 2 MB at a time instead of 4 KB
# (bench/memory_reuse.py: 1.12x the recommended model's training step on a 2-core AMD EPYC). PyTorch reads
# the variable once, at its first allocation, so it is set here, before anything imports torch; a value the
# user set (0 turns it off) is kept. Where the kernel offers no huge pages it changes nothing.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
