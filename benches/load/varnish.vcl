# Varnish with its defaults for a cache in front of one origin: the builtin
# VCL honours Cache-Control, streams misses to waiters and coalesces them.
# Storage is malloc, sized for the largest working set by run.sh.
# /pass/ is passed outright, as nginx gets /pass/ without its cache lock
# (see nginx-cache.conf); the builtin hit-for-miss would also avoid waiting.
vcl 4.1;
backend origin {
    .host = "127.0.0.1";
    .port = "18080";
}

sub vcl_recv {
    if (req.url ~ "^/pass/") {
        return (pass);
    }
}
