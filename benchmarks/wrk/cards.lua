-- wrk script for the API benchmarks: POSTs a card body per request and reports, as one JSON line, the counts by
-- status and the full latency histogram (so the runner can merge rounds exactly).
--
-- Environment (set by benchmarks/harness.py):
--   BENCH_API_KEY   the merchant's raw key
--   BENCH_MODE      "new": a card never sent before on every request (201 path)
--                   "repeat": a card drawn at random from the BENCH_STORED cards the runner stored (200 path)
--                   "bare": the "new" body, sent to an endpoint that ignores it
--   BENCH_PREFIX    the first digits of every card of this run (brand, run salt)
--   BENCH_STORED    how many stored cards "repeat" draws from
--   BENCH_HOLDER, BENCH_MONTH, BENCH_YEAR   the stored cards' holder and expiry (so "repeat" matches, not conflicts)
--
-- Card numbers: BENCH_PREFIX .. one digit .. eight-digit counter .. Luhn check digit. The digit is the wrk thread
-- (1-8) in "new" mode and 9 for the cards the runner stores, so a new card is never a stored one.

local api_key = os.getenv("BENCH_API_KEY")
local mode = os.getenv("BENCH_MODE") or "new"
local prefix = os.getenv("BENCH_PREFIX")
local stored = tonumber(os.getenv("BENCH_STORED") or "0")
local holder = os.getenv("BENCH_HOLDER") or "Bench Holder"
local month = os.getenv("BENCH_MONTH") or "12"
local year = os.getenv("BENCH_YEAR") or "2034"

local threads = {}
local thread_number = 0

function setup(thread)
  thread_number = thread_number + 1
  thread:set("tid", thread_number)
  table.insert(threads, thread)
end

local function check_digit(partial)
  local sum, double = 0, true
  for i = #partial, 1, -1 do
    local d = partial:byte(i) - 48
    if double then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    sum = sum + d
    double = not double
  end
  return tostring((10 - sum % 10) % 10)
end

local function card(digit, n)
  local partial = prefix .. digit .. string.format("%08d", n)
  return partial .. check_digit(partial)
end

local headers = {
  ["Authorization"] = "Bearer " .. (api_key or ""),
  ["Content-Type"] = "application/json",
}
local counter = 0
statuses = {}

function init(args)
  math.randomseed(os.time() * 100 + (tid or 0))
end

function request()
  local number
  if mode == "repeat" then
    number = card("9", math.random(0, stored - 1))
  else
    counter = counter + 1
    number = card(tostring(tid), counter)
  end
  local body = '{"paymentInstrument":{"type":"card/front","cardHolderName":"' .. holder ..
    '","cardNumber":"' .. number .. '","cardExpiryDate":{"month":' .. month .. ',"year":' .. year .. '}}}'
  return wrk.format("POST", nil, headers, body)
end

function response(status, hdrs, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    for code, n in pairs(s) do
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
