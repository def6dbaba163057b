"""``predict`` at scale: the job over torch.distributed processes (one, ``--workers N`` or torchrun) with its
merged JSON Lines outputs, and the Ray Data engine; both give the bytes one process writes.
"""
