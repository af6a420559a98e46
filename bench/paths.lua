-- GET requests taken in turn from a file of "path<TAB>cookie" lines (BENCH_REQUESTS):
-- signed-in doctors' sessions, forged by bench/run.py with the app's own session serializer.
package.path = package.path .. ";bench/?.lua"
local report = require("report")

local lines = {}
for line in io.lines(os.getenv("BENCH_REQUESTS")) do
  local path, cookie = line:match("^([^\t]*)\t?(.*)$")
  lines[#lines + 1] = {path = path, cookie = cookie}
end

local counter = 0
local offset = 0

function setup(thread)
  report.track(thread)
  offset = offset + 7
  thread:set("offset", offset)
end

function init(args)
  counter = (offset or 0)
end

function request()
  counter = counter + 1
  local item = lines[(counter % #lines) + 1]
  -- What a browser sends for a request of our own pages (a link, pdf.js fetching the content):
  -- the content route serves and records a reading only then.
  local headers = {["Sec-Fetch-Site"] = "same-origin"}
  if item.cookie ~= "" then
    headers["Cookie"] = "__Host-relais=" .. item.cookie
  end
  return wrk.format("GET", item.path, headers)
end

done = report.done
