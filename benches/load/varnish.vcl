# Varnish with its defaults for a cache in front of one origin: the builtin
# VCL honours Cache-Control, streams misses to waiters and coalesces them.
# Storage is malloc, sized for the largest working set by run.sh.
vcl 4.1;
backend origin {
    .host = "127.0.0.1";
    .port = "18080";
}
