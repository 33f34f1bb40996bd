-- wrk traffic script for bench/run.sh. Parameters come from the environment
-- (read at load time, so every wrk Lua state sees them):
--   SWB_TENANTS  distinct X-Tenant-Name values (0 = no header)          [1]
--   SWB_ZIPF_S   Zipf exponent of the tenant distribution                [1.0]
--   SWB_MODE     ok    : GET /status/200
--                mixed : REV23 codes 200,201,400,401,402,403,404,409,451,500,503 + 429
--                prime : every tenant once, in order (registers them all)
--   SWB_CLOSE    1 = "Connection: close" (a new connection per request)
-- Requests are pre-built in init() (a ring of pre-sampled requests), so the
-- load generator spends no time on sampling while measuring.
local tenants = tonumber(os.getenv("SWB_TENANTS") or "1")
local zipf_s = tonumber(os.getenv("SWB_ZIPF_S") or "1.0")
local mode = os.getenv("SWB_MODE") or "ok"
local close = os.getenv("SWB_CLOSE") == "1"

-- code -> weight (percent) for the mixed workload
local MIXED = {
  {200, 70}, {201, 8}, {404, 6}, {400, 3}, {401, 3}, {403, 2},
  {409, 2}, {429, 2}, {402, 1}, {451, 1}, {500, 1}, {503, 1},
}

local reqs = {}
local n = 0
local i = 0

local function zipf_cdf(k, s)
  local cdf, acc = {}, 0
  for r = 1, k do
    acc = acc + 1 / (r ^ s)
    cdf[r] = acc
  end
  for r = 1, k do
    cdf[r] = cdf[r] / acc
  end
  return cdf
end

local function pick(cdf, u)
  local lo, hi = 1, #cdf
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

local function build(tenant, code)
  local h = { ["Host"] = "bench.local", ["Accept"] = "application/json" }
  if tenant then h["X-Tenant-Name"] = "t" .. tenant end
  if close then h["Connection"] = "close" end
  return wrk.format("GET", "/status/" .. code, h)
end

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6) + tostring({}):len() * 7919)
  local codes = {}
  for _, cw in ipairs(MIXED) do
    for _ = 1, cw[2] do codes[#codes + 1] = cw[1] end
  end
  if mode == "prime" then
    for t = 1, math.max(tenants, 1) do
      reqs[t] = build(tenants > 0 and t or nil, 200)
    end
  else
    local cdf = tenants > 1 and zipf_cdf(tenants, zipf_s) or nil
    local size = 32768
    for k = 1, size do
      local t = nil
      if tenants == 1 then t = 1 elseif cdf then t = pick(cdf, math.random()) end
      local code = 200
      if mode == "mixed" then code = codes[math.random(#codes)] end
      reqs[k] = build(t, code)
    end
  end
  n = #reqs
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "SWBENCH requests=%d duration_us=%d errors=%d status_errors=%d p50=%d p99=%d p999=%d mean=%.1f\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.mean))
end
