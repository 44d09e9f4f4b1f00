"""Input limits shared by the ML core and the services (kept free of heavy imports so settings load fast)."""

# Cap decoded pixels before decoding (a 30k x 30k PNG is a decompression bomb, not an MRI slice).
MAX_PIXELS = 64_000_000
