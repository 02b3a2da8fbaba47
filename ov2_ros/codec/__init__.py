"""Codec layer: H.264 bitstream parsing, containers, encoding, live decoding, saliency inputs."""
