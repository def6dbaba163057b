"""``bench``: speed, memory and mAP per backend x precision x batch, each configuration in its own process, the
machine's peak beside it, and the recommendation of the fastest configuration that keeps the answer.
"""
