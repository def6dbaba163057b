"""The runtimes behind one interface: the registry of what each backend and precision can do (:mod:`.registry`),
one module per runtime (torch, ONNX Runtime, OpenVINO, LiteRT) returning the raw head output for an NCHW batch,
and the file metadata every backend reads into a :class:`~yoloparity.types.ModelSpec`.
"""
