-- Shared by the wrk scripts: print the run's figures as one JSON line that bench/run.py reads.
-- wrk --latency prints p50/p75/p90/p99 only; p95 is asked of its histogram here.
-- Every answer other than 200/201 is counted too (wrk itself counts only 4xx/5xx): a
-- redirect to the sign-in page must never pass for a fast page.
local report = {}
local threads = {}

function report.track(thread)
  threads[#threads + 1] = thread
end

bad = 0

function response(status, headers, body)
  if status ~= 200 and status ~= 201 then
    bad = bad + 1
  end
end

function report.done(summary, latency, requests)
  local errors = summary.errors
  local unexpected = 0
  for _, thread in ipairs(threads) do
    unexpected = unexpected + thread:get("bad")
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p95_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,"unexpected_status":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout, unexpected))
end

return report
