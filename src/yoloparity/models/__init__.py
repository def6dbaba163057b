"""Our own networks from the reference checkpoints: the safe checkpoint reader, the layers and the model builder
(widths and depths read from the tensors), official model names and downloads, ONNX export, and the reference
tools' command lines.
"""
