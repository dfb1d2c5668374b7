-- wrk script shared by the benches: replays a pre-generated pool of raw HTTP requests and checks every reply.
--
--   wrk ... -s bench/pool.lua URL -- <pool prefix> <cycle 0|1> <check: equals|contains|none> [expected]
--
-- Thread i (from 0) reads "<prefix>.<i>": records of "<byte length>\n<raw request bytes>". Each thread sends its
-- records in order, once each, so no two requests of a run are alike (cycle=1 repeats them, for the floor). When a
-- thread runs out it sends requests to /__bench_pool_exhausted__, counted as errors: the pool was too small.
-- done() prints one line "BENCH_JSON {...}" that bench/common.py parses.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local pool = {}
local size = 0
local index = 0
local cycle = false
local check = "none"
local expected = ""
local exhausted_request = nil

-- Counters read by done() through thread:get(); globals so that they are visible there.
sent = 0
ok200 = 0
bad_status = 0
bad_body = 0
exhausted = 0
first_bad = ""

function init(args)
  local prefix = args[1]
  cycle = args[2] == "1"
  check = args[3] or "none"
  expected = args[4] or ""
  local f = assert(io.open(prefix .. "." .. id, "rb"))
  while true do
    local n = f:read("*n")
    if not n then break end
    f:read(1) -- the newline after the length
    size = size + 1
    pool[size] = f:read(n)
  end
  f:close()
  exhausted_request = wrk.format("GET", "/__bench_pool_exhausted__")
end

function request()
  sent = sent + 1
  if index >= size then
    if not cycle or size == 0 then
      exhausted = exhausted + 1
      return exhausted_request
    end
    index = 0
  end
  index = index + 1
  return pool[index]
end

local function note(reason, body)
  if first_bad == "" then
    first_bad = reason .. ": " .. string.sub(body or "", 1, 200)
  end
end

function response(status, headers, body)
  if status ~= 200 then
    bad_status = bad_status + 1
    note("status " .. status, body)
    return
  end
  ok200 = ok200 + 1
  local good = true
  if check == "equals" then
    good = body == expected
  elseif check == "contains" then
    good = string.find(body, expected, 1, true) ~= nil
  end
  if not good then
    bad_body = bad_body + 1
    note("unexpected body", body)
  end
end

local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local totals = {sent = 0, ok200 = 0, bad_status = 0, bad_body = 0, exhausted = 0}
  local first = ""
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (thread:get(name) or 0)
    end
    local bad = thread:get("first_bad") or ""
    if first == "" then first = bad end
  end
  local e = summary.errors
  local parts = {
    string.format('"duration_us": %d', summary.duration),
    string.format('"completed": %d', summary.requests),
    string.format('"bytes": %d', summary.bytes),
    string.format('"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}',
      e.connect, e.read, e.write, e.timeout, e.status),
    string.format('"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}',
      latency.min, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)),
    '"first_bad": ' .. json_string(first),
  }
  for name, value in pairs(totals) do
    table.insert(parts, string.format('"%s": %d', name, value))
  end
  io.write("BENCH_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
