-- report.lua RAW.tsv "servers" "loads": turn the raw measurements into one
-- Markdown table (rows = loads, columns = servers), median of the repeats,
-- each cell "figure (ratio to C)".
local raw, servers_s, loads_s = arg[1], arg[2] or "c duplex luasocket luv cqueues",
  arg[3] or "keepalive close pingpong bulk idle"

local NAMES = { c = "C epoll", duplex = "duplex", luasocket = "LuaSocket", luv = "luv", cqueues = "cqueues" }

-- metric id, load, label (unit; what is better)
local ROWS = {
  { "ka_rps",    "keepalive", "HTTP keep-alive (wrk -c64): req/s" },
  { "ka_cpu",    "keepalive", "  server CPU µs per request" },
  { "cl_rps",    "close",     "HTTP Connection: close (wrk -c64): req/s" },
  { "cl_cpu",    "close",     "  server CPU µs per request (= per connection)" },
  { "pp_rate",   "pingpong",  "ping-pong 64 conns x 64 B: msg/s" },
  { "pp_p50",    "pingpong",  "  p50 latency µs" },
  { "pp_p99",    "pingpong",  "  p99 latency µs" },
  { "pp_cpu",    "pingpong",  "  server CPU µs per message" },
  { "bulk_gbps", "bulk",      "bulk echo, 1 conn, 64 KiB writes: GB/s" },
  { "bulk_secs", "bulk",      "  seconds" },
  { "bulk_cpu",  "bulk",      "  server CPU-seconds per GB echoed" },
  { "idle_rss",  "idle",      "idle conns: server RSS KiB per connection" },
  { "idle_cpu",  "idle",      "  server CPU µs per connection (accept + 1-byte echo)" },
}

local function words(s)
  local t = {}
  for w in s:gmatch("%S+") do t[#t + 1] = w end
  return t
end

local servers, loads = words(servers_s), {}
for _, l in ipairs(words(loads_s)) do loads[l] = true end

-- data[server][metric] = { values..., fails = n, nas = n }
local data = {}
for line in io.lines(raw) do
  local s, m, _, v = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]*)$")
  if s then
    data[s] = data[s] or {}
    local d = data[s][m] or { fails = 0, nas = 0 }
    data[s][m] = d
    if v == "fail" then d.fails = d.fails + 1
    elseif v == "na" then d.nas = d.nas + 1
    else d[#d + 1] = tonumber(v) end
  end
end

local function median(d)
  if not d or #d == 0 then return nil end
  table.sort(d)
  local n = #d
  if n % 2 == 1 then return d[(n + 1) // 2] end
  return (d[n // 2] + d[n // 2 + 1]) / 2
end

local function fmt(v)
  local a = math.abs(v)
  if a >= 1e6 then return string.format("%.2fM", v / 1e6)
  elseif a >= 1e5 then return string.format("%.0fk", v / 1e3)
  elseif a >= 1e4 then return string.format("%.1fk", v / 1e3)
  elseif a >= 100 then return string.format("%.0f", v)
  elseif a >= 10 then return string.format("%.1f", v)
  elseif a >= 0.01 or a == 0 then return string.format("%.2f", v)
  else return string.format("%.3g", v) end
end

local header = { "load" }
for _, s in ipairs(servers) do header[#header + 1] = NAMES[s] or s end
local out = { "| " .. table.concat(header, " | ") .. " |",
              "|" .. string.rep(" --- |", #header) }
local partial = false
for _, row in ipairs(ROWS) do
  local id, load, label = row[1], row[2], row[3]
  if loads[load] then
    local cells = { label }
    local cd = data.c and data.c[id]
    local cmed = median(cd)
    for _, s in ipairs(servers) do
      local d = data[s] and data[s][id]
      local v = median(d)
      local cell
      if v then
        cell = fmt(v)
        if cmed and cmed ~= 0 then cell = cell .. string.format(" (%.2fx)", v / cmed)
        else cell = cell .. " (-)" end
        if d.fails > 0 then cell = cell .. " *"; partial = true end
      elseif d and d.fails > 0 then cell = "fails"
      else cell = "n/a" end
      cells[#cells + 1] = cell
    end
    out[#out + 1] = "| " .. table.concat(cells, " | ") .. " |"
  end
end
out[#out + 1] = ""
out[#out + 1] = "Each cell: median over the repeats, then (figure / C epoll's figure). "
  .. "Higher is better for req/s, msg/s and GB/s; lower for latency, CPU, seconds and RSS. "
  .. "CPU is the server process's on-CPU time during the load, divided by the work done. "
  .. "\"fails\": every repeat failed (server died, load errors, or time-out); "
  .. "\"n/a\": the server did not start (see out/logs/*.server.err)."
if partial then out[#out + 1] = "\"*\": some repeats failed; the median is over the others." end
print(table.concat(out, "\n"))
