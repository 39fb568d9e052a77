-- wrk script: after the run, print one machine-readable line with the
-- throughput, latency percentiles (microseconds) and error counts.
-- web.sh greps for the "WRKJSON " prefix. No request/response callbacks are
-- defined, so wrk keeps its fast path and this adds no per-request cost.
done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"bytes":%d,"rps":%.2f,' ..
    '"lat_mean_us":%.1f,"lat_stdev_us":%.1f,"lat_max_us":%d,' ..
    '"p50_us":%d,"p75_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d,"non_2xx_3xx":%d}\n',
    summary.requests, secs, summary.bytes, summary.requests / secs,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9),
    e.connect, e.read, e.write, e.timeout, e.status))
end
