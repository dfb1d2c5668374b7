-- bench/vote: like bench/pool.lua (same records, same BENCH_JSON line), but each thread sends its records once and
-- stops when every one of them has been answered, so the run measures exactly the pool (no filler requests).
--   wrk ... -s bench/vote/vote.lua URL -- <pool prefix> <cycle 0|1> <check: equals|contains|none> [expected]

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
local check = "none"
local expected = ""

sent = 0
ok200 = 0
bad_status = 0
bad_body = 0
exhausted = 0
first_bad = ""
answered = 0

function init(args)
  local prefix = args[1]
  check = args[3] or "none"
  expected = args[4] or ""
  local f = assert(io.open(prefix .. "." .. id, "rb"))
  while true do
    local n = f:read("*n")
    if not n then break end
    f:read(1)
    size = size + 1
    pool[size] = f:read(n)
  end
  f:close()
end

function request()
  if index >= size then
    return ""  -- nothing left: this connection idles until the thread stops
  end
  index = index + 1
  sent = sent + 1
  return pool[index]
end

local function note(reason, body)
  if first_bad == "" then
    first_bad = reason .. ": " .. string.sub(body or "", 1, 200)
  end
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 then
    bad_status = bad_status + 1
    note("status " .. status, body)
  else
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
  if answered >= size then
    wrk.thread:stop()
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
