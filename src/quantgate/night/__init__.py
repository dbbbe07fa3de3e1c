"""The nightly GPU tier and scale-out: shards and their merge, the GPU environment's lock, the
hardware an entry needs, xdist groups, the machine a verdict was made on, the quiet lock of timed
sections."""
