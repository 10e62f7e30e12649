"""Stream the raw Tianchi Ali-CCP files into the Parquet cache (stage 1: raw ids, nothing fitted).

`convert_raw` reads `sample_skeleton_{split}.csv` and `common_features_{split}.csv` block by
block with pyarrow's CSV reader (every column as bytes) and writes `skeleton_{split}.parquet` and
`common_{split}.parquet` with the columns described at the bottom of `schema.py`, then
`manifest.json` (fingerprint, counts, skipped and repaired lines, speed), last. Two worker
threads parse blocks while the main thread reads and writes.

One module per idea, from the bottom up:

    layout.py        the two file layouts, the cache's Parquet schema, RawFormatError
    line_rules.py    the per-line rule (plain Python): what is wrong with one bad line
    kernels.py       byte-parsing kernels: ids, values and field ids of a whole block at once
    blocks.py        one CSV block -> a table of its good rows and its bad lines
    checked_file.py  the file as pyarrow reads it (bad characters swapped for markers), the
                     reader's options, and each row's line number
    file_convert.py  one raw file -> one Parquet file, in line order (FileConversion)
    cache.py         cache settings, file names, and whether a cache is current
    convert.py       the whole conversion: input checks (archives), splits, manifest

The names below are the package's interface; the rest of the code imports only these.
"""

from ccp.data.raw.cache import (
    CACHE_FORMAT,
    MANIFEST,
    cache_is_current,
    output_names,
    raw_paths,
    raw_settings,
)
from ccp.data.raw.convert import BLOCK_BYTES, WORKERS, convert_raw
from ccp.data.raw.layout import (
    COMMON,
    EXAMPLES_KEPT,
    MAX_INT_DIGITS,
    SKELETON,
    RawFormatError,
    output_schema,
    show,
)

__all__ = ["BLOCK_BYTES", "CACHE_FORMAT", "COMMON", "EXAMPLES_KEPT", "MANIFEST", "MAX_INT_DIGITS",
           "SKELETON", "WORKERS", "RawFormatError", "cache_is_current", "convert_raw",
           "output_names", "output_schema", "raw_paths", "raw_settings", "show"]
