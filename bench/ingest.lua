-- POST /api/v1/documents: a 200 KB PDF, a new document_id on every request (no replays).
-- BENCH_INGEST names a file: line 1 the bearer token, line 2 a run prefix, line 3 the JSON
-- after the patient (with the base64 content), then one patient JSON object per line.
package.path = package.path .. ";bench/?.lua"
local report = require("report")

local file = io.open(os.getenv("BENCH_INGEST"), "r")
local token = file:read("*l")
local prefix = file:read("*l")
local rest = file:read("*l")
local patients = {}
for line in file:lines() do
  patients[#patients + 1] = line
end
file:close()

local threads = 0
local counter = 0

function setup(thread)
  report.track(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function request()
  counter = counter + 1
  local id = prefix .. "-" .. tid .. "-" .. counter
  local patient = patients[((counter * 31 + tid) % #patients) + 1]
  local body = '{"document_id":"' .. id .. '","patient":' .. patient .. rest
  return wrk.format("POST", "/api/v1/documents", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, body)
end

done = report.done
