-- The request mix of the Envoy benchmark: 1 in 10 requests is from the tester (header route),
-- the rest go through the 90/10 split. done() prints the figures as one JSON line.
local counter = 0

request = function()
  counter = counter + 1
  -- x-route-to feeds the minimal reference module (test/support/route-wasm.ts); others ignore it.
  local headers = { ["Host"] = "reviews", ["x-route-to"] = "v1" }
  if counter % 10 == 0 then
    headers["x-user"] = "tester"
  end
  return wrk.format("GET", "/reviews/" .. counter, headers)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"p50Us":%d,"p99Us":%d,"errors":%d,"non2xx":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
