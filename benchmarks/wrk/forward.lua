-- wrk script for the forward benchmark: POSTs one constant body per request (a forward of one stored card, or the
-- same bytes to the bare endpoint; the hsm benchmark's detokenize of one stored card, an empty body) and reports, as
-- one JSON line, the counts by status and the full latency histogram, in the format of cards.lua (the runner merges
-- rounds the same way).
--
-- Environment (set by benchmarks/cases/forward.py and hsm.py):
--   BENCH_API_KEY   the merchant's raw key
--   BENCH_BODY      the JSON body of every request

local headers = {
  ["Authorization"] = "Bearer " .. (os.getenv("BENCH_API_KEY") or ""),
  ["Content-Type"] = "application/json",
}
local body = os.getenv("BENCH_BODY") or "{}"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

statuses = {}

function request()
  return wrk.format("POST", nil, headers, body)
end

function response(status, hdrs, answer)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      counts[code] = (counts[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', code, n))
  end
  local hist = {}
  for i = 1, #latency do
    local value, count = latency(i)
    table.insert(hist, string.format("[%d,%d]", value, count))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"duration_us":%d,"requests":%d,"statuses":{%s},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"latency_us":[%s]}\n',
    summary.duration, summary.requests, table.concat(parts, ","),
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(hist, ",")))
end
