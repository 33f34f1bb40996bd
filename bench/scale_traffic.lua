-- wrk script of bench/scale.py: sends a pre-computed list of requests once.
--   SCALE_REQS  file of "tenant code" lines (one request each, already shuffled)
-- Every wrk thread (run it with -t 1) sends the list from the start, cycling if
-- need be; once it has as many responses as lines it prints "SCALE_DONE" and stops,
-- and scale.py ends wrk with SIGINT (wrk's main thread sleeps out -d otherwise), so
-- the sidecar sees the list about once (plus at most the requests in flight).
local path = os.getenv("SCALE_REQS")
local reqs = {}
local n = 0
local i = 0
local got = 0

function init(args)
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    local tenant, code = line:match("^(%S+)%s+(%d+)$")
    if tenant then
      n = n + 1
      reqs[n] = wrk.format("GET", "/status/" .. code,
        { ["Host"] = "scale.local", ["X-Tenant-Name"] = tenant })
    end
  end
  f:close()
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end

function response(status, headers, body)
  got = got + 1
  if got == n then
    io.write("SCALE_DONE\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("SCALE requests=%d duration_us=%d errors=%d\n", summary.requests,
    summary.duration, e.connect + e.read + e.write + e.timeout))
end
