-- wrk traffic script for bench/routes.sh: REV23-like requests over 30
-- endpoints (6 resources x list, create, one, update, a nested note) with
-- random ids, pre-built in init() so sampling costs nothing while measuring.
-- Every request carries X-Tenant-Name (one of 100) and X-Api-Key.
local RES = {"customers", "appointments", "payments", "webhooks", "invoices", "services"}
local reqs, n, i = {}, 0, 0

function init(args)
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0) % 1000)
  for k = 1, 4096 do
    local r = RES[math.random(#RES)]
    local id = tostring(math.random(1, 999999999))
    local kind = math.random(5)
    local method, path = "GET", "/api/v2/" .. r
    if kind == 2 then method = "POST"
    elseif kind == 3 then path = path .. "/" .. id
    elseif kind == 4 then method = "PUT"; path = path .. "/" .. id
    elseif kind == 5 then method = "DELETE"; path = path .. "/" .. id .. "/notes/n" .. math.random(1000) .. "x" .. id end
    local headers = {
      ["X-Tenant-Name"] = "studio" .. math.random(100),
      ["X-Api-Key"] = "k-0123456789abcdef",
      ["Content-Length"] = (method == "POST" or method == "PUT") and "0" or nil,
    }
    reqs[k] = wrk.format(method, path .. "?page=" .. math.random(9), headers)
  end
  n = #reqs
end

function request()
  i = i % n + 1
  return reqs[i]
end
