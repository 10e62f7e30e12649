"""Data layer: readers (raw Tianchi, processed CSV), the synthetic generator, the encoder.

`load()` is the one entry point the harness uses; see `ccp.data.loader`.
"""
