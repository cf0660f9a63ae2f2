-- POST a JSON body; BODY may contain %d (a per-request counter) and %t (the thread number). With ALTERNATE,
-- every second request of a thread goes to that path instead (register, then unregister: run one connection
-- per thread so a thread's requests go strictly in turn).
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  thread_id = id or 0
end

request = function()
  counter = counter + 1
  local body = os.getenv("BODY")
  local modulo = tonumber(os.getenv("MODULO") or "0")
  local n = counter
  if modulo > 0 then n = counter % modulo end
  body = string.gsub(body, "%%d", tostring(n))
  body = string.gsub(body, "%%t", tostring(thread_id))
  local headers = {}
  headers["Content-Type"] = "application/json"
  if os.getenv("TOKEN") then headers["Authorization"] = "Bearer " .. os.getenv("TOKEN") end
  local path = nil
  if os.getenv("ALTERNATE") and counter % 2 == 0 then path = os.getenv("ALTERNATE") end
  return wrk.format(os.getenv("METHOD") or "POST", path, headers, body)
end

done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"duration_us\": %d, \"errors\": %d, \"non2xx\": %d, " ..
    "\"p50_us\": %d, \"p95_us\": %d, \"p99_us\": %d, \"max_us\": %d}\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
