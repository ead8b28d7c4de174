-- figures.lua: what report.lua and chart.lua share: reading a raw TSV
-- (server, metric, repeat, value), medians, display names, issue 10's targets.
local M = {}

M.NAMES = {
  c = "C epoll", duplex = "duplex", duplex_jit = "duplex (LuaJIT)", luasocket = "LuaSocket", luv = "luv", cqueues = "cqueues",
  nginx = "nginx", nginx_lua = "nginx + Lua",
  copas = "copas (LuaSocket)", copas_face = "copas (duplex.socket)",
  direct = "direct", haproxy = "HAProxy", duplex_fwd = "duplex forwarder", duplex_pump = "duplex Lua pump",
}
M.FORWARDERS = { "direct", "haproxy", "duplex_fwd", "duplex_pump" }

-- Server CPU per operation, as a ratio to C: at most `max`.
M.CPU_TARGETS = {
  { id = "ka_cpu",   load = "keepalive", short = "keep-alive", label = "HTTP keep-alive CPU per request", max = 1.10 },
  { id = "cl_cpu",   load = "close",     short = "churn",      label = "connection churn (Connection: close) CPU per connection", max = 1.10 },
  { id = "pp_cpu",   load = "pingpong",  short = "ping-pong",  label = "ping-pong CPU per message", max = 1.10 },
  { id = "bulk_cpu", load = "bulk",      short = "bulk",       label = "bulk echo CPU per GB", max = 1.10 },
}
M.IDLE_MAX_KIB = 1.25 -- per idle connection, absolute
-- Issue 18's target: duplex on LuaJIT spends no more server CPU per
-- operation than duplex on 5.4, on every load (ratio duplex_jit / duplex).
M.JIT_LOADS = {
  { id = "ka_cpu", load = "keepalive", label = "HTTP keep-alive, CPU per request" },
  { id = "cl_cpu", load = "close", label = "connection churn, CPU per connection" },
  { id = "pp_cpu", load = "pingpong", label = "ping-pong, CPU per message" },
  { id = "bulk_cpu", load = "bulk", label = "bulk echo, CPU per GB" },
  { id = "idle_cpu", load = "idle", label = "idle connections, CPU per connection (accept + 1-byte echo)" },
}
M.JIT_MAX = 1.00

function M.words(s)
  local t = {}
  for w in (s or ""):gmatch("%S+") do t[#t + 1] = w end
  return t
end

-- data[server][metric] = { numbers..., fails = n, nas = n, skips = n,
-- byrep = { [repeat] = number } };
-- "fail": the load failed, "na": the server did not start, "skip": the load
-- does not apply to that server. A missing or empty file gives {}.
function M.read(path)
  local data, f = {}, path and path ~= "" and io.open(path)
  if not f then return data end
  for line in f:lines() do
    local s, m, r, v = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]*)$")
    if s then
      data[s] = data[s] or {}
      local d = data[s][m] or { fails = 0, nas = 0, skips = 0, byrep = {} }
      data[s][m] = d
      if v == "fail" then d.fails = d.fails + 1
      elseif v == "na" then d.nas = d.nas + 1
      elseif v == "skip" then d.skips = d.skips + 1
      elseif tonumber(v) then
        d[#d + 1] = tonumber(v)
        d.byrep[r] = tonumber(v)
      end
    end
  end
  f:close()
  return data
end

function M.get(data, s, m) return data[s] and data[s][m] end

-- median of the numbers (nil if none)
function M.median(d)
  if not d or #d == 0 then return nil end
  local t = table.move(d, 1, #d, 1, {})
  table.sort(t)
  local n = #t
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end

function M.med(data, s, m) return M.median(M.get(data, s, m)) end

-- median of s's metric divided by C's (or by `base`'s)
function M.ratio(data, s, m, base)
  local v, b = M.med(data, s, m), M.med(data, base or "c", m)
  if v and b and b ~= 0 then return v / b end
end

-- The lowest and highest ratio of s's metric to C's (or `base`'s) within
-- one repeat: repeat r of every server runs back to back, so these show
-- how far the machine's drift moves a ratio.
function M.ratio_range(data, s, m, base)
  local d, b = M.get(data, s, m), M.get(data, base or "c", m)
  local lo, hi
  if not (d and b) then return nil end
  for r, v in pairs(d.byrep) do
    local bv = b.byrep[r]
    if bv and bv ~= 0 then
      lo, hi = math.min(lo or math.huge, v / bv), math.max(hi or -math.huge, v / bv)
    end
  end
  return lo, hi
end

function M.fmt(v)
  local a = math.abs(v)
  if a >= 1e6 then return string.format("%.2fM", v / 1e6)
  elseif a >= 1e5 then return string.format("%.0fk", v / 1e3)
  elseif a >= 1e4 then return string.format("%.1fk", v / 1e3)
  elseif a >= 100 then return string.format("%.0f", v)
  elseif a >= 10 then return string.format("%.1f", v)
  elseif a >= 0.01 or a == 0 then return string.format("%.2f", v)
  else return string.format("%.3g", v) end
end

return M
