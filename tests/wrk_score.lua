-- wrk script for tests/bench_daemon.sh: POST one score request again and again and print
-- a machine-readable summary line at the end.
--   wrk ... -s tests/wrk_score.lua URL -- BODY_FILE [DELAY_MS [HEADER_LENGTH]]
-- BODY_FILE holds the request: JSON ({"sample": [...]} or {"samples": [...]}) for
-- /v1/score, or with HEADER_LENGTH an Open Inference Protocol infer request in the binary
-- tensor data extension's form (that many bytes of JSON header, then raw tensor bytes; a
-- Lua string holds them as they are), sent with Inference-Header-Content-Length.
-- With DELAY_MS > 0 each connection waits a random 0.5..1.5 x DELAY_MS (mean DELAY_MS)
-- after each response before its next request: a rate-limited load instead of a closed
-- loop at full speed.

local threads = 0
local delay_ms = 0

function setup(thread)
   threads = threads + 1
   thread:set("thread_id", threads)
end

function init(args)
   local path = args[1]
   if not path then error("wrk_score.lua: give the body file after --") end
   local f = assert(io.open(path, "rb"))
   wrk.body = f:read("*a")
   f:close()
   wrk.method = "POST"
   local header_length = tonumber(args[3] or "")
   if header_length then
      wrk.headers["Content-Type"] = "application/octet-stream"
      wrk.headers["Inference-Header-Content-Length"] = tostring(header_length)
   else
      wrk.headers["Content-Type"] = "application/json"
   end
   delay_ms = tonumber(args[2] or "0") or 0
   math.randomseed(os.time() * 100 + (thread_id or 0))
end

-- wrk looks delay() up once, at load time, so it is always defined; 0 means no delay.
function delay()
   if delay_ms <= 0 then return 0 end
   return math.floor(delay_ms * (0.5 + math.random()) + 0.5)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRKSTATS requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d " ..
      "status=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
