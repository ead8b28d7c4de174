-- tls_report.lua RAW.tsv "servers" "loads": the TLS table. Each cell is the
-- median of the repeats [min–max]; each server's "vs C" column is the ratio
-- of the medians [range of the per-repeat ratios: repeat r of every server
-- ran back to back]; the targets of issue 8 are checked on the CPU and
-- memory rows.
local raw, servers_s, loads_s = arg[1], arg[2] or "c duplex duplex_noverify", arg[3] or "handshake bulk small idle"

-- metric, load, label, target kind ("ratio": <= 1.15x C; "plus": <= C + 1.5 KiB;
-- "info": no comparison with C)
local ROWS = {
  { "hs_cpu",    "handshake", "full handshakes (TLS 1.3, P-256, X25519, 1-byte echo, close_notify): **server CPU µs per handshake**", "ratio" },
  { "hs_rate",   "handshake", "  handshakes/s (one sequential client)" },
  { "hs_others", "handshake", "  other processes' use of the server's CPU meanwhile, %", "info" },
  { "bulk_cpu",  "bulk",      "bulk echo, 1 conn, 16 KiB writes: **server CPU-s per GB**", "ratio" },
  { "bulk_gbps", "bulk",      "  GB/s (each way)" },
  { "bulk_others", "bulk",    "  other processes' use of the server's CPU meanwhile, %", "info" },
  { "sm_cpu",    "small",     "small messages, 64 conns x 64 B in flight: **server CPU µs per message**", "ratio" },
  { "sm_rate",   "small",     "  msg/s" },
  { "sm_p50",    "small",     "  p50 round trip µs" },
  { "sm_p99",    "small",     "  p99 round trip µs" },
  { "sm_others", "small",     "  other processes' use of the server's CPU meanwhile, %", "info" },
  { "idle_rss",  "idle",      "idle TLS connections after one echo: **server RSS KiB per connection**", "plus" },
  { "idle_cpu",  "idle",      "  server CPU µs per connection opened (handshake + 1-byte echo, 64 at once)" },
  { "idle_others", "idle",    "  other processes' use of the server's CPU meanwhile, %", "info" },
}
local TARGET = { ratio = 1.15, plus = 1.5 }

local function words(s)
  local t = {}
  for w in s:gmatch("%S+") do t[#t + 1] = w end
  return t
end
local servers, loads = words(servers_s), {}
for _, l in ipairs(words(loads_s)) do loads[l] = true end

-- data[server][metric] = { [rep] = value or false (failed) }
local data = {}
for line in io.lines(raw) do
  local s, m, r, v = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]*)$")
  if s then
    data[s] = data[s] or {}
    data[s][m] = data[s][m] or {}
    data[s][m][tonumber(r)] = tonumber(v) or false
  end
end

local function values(d)
  local t = {}
  for _, v in pairs(d or {}) do if v then t[#t + 1] = v end end
  table.sort(t)
  return t
end
local function median(t)
  local n = #t
  if n == 0 then return nil end
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end
local function fmt(v)
  local a = math.abs(v)
  if a >= 1e5 then return string.format("%.0fk", v / 1e3)
  elseif a >= 1e4 then return string.format("%.1fk", v / 1e3)
  elseif a >= 100 then return string.format("%.0f", v)
  elseif a >= 10 then return string.format("%.1f", v)
  else return string.format("%.2f", v) end
end
local function cell(d)
  local t = values(d)
  local med = median(t)
  if not med then
    local any = false
    for _ in pairs(d or {}) do any = true end
    return any and "fails" or "n/a", nil
  end
  local failed = 0
  for _, v in pairs(d) do if v == false then failed = failed + 1 end end
  local s = fmt(med)
  if #t > 1 then s = s .. " [" .. fmt(t[1]) .. "–" .. fmt(t[#t]) .. "]" end
  if failed > 0 then s = s .. " *" end
  return s, med
end

local NAMES = { c = "C OpenSSL epoll", duplex = "duplex", duplex_noverify = "duplex, verify = false" }
local others = {}
for _, s in ipairs(servers) do if s ~= "c" then others[#others + 1] = s end end
local header = { "load / figure" }
for _, s in ipairs(servers) do
  header[#header + 1] = NAMES[s] or s
  if s ~= "c" and data.c then header[#header + 1] = "vs C" end
end
if data.c and #others > 0 then header[#header + 1] = "target" end
local out = { "| " .. table.concat(header, " | ") .. " |", "|" .. string.rep(" --- |", #header) }

-- "1.23x [1.10–1.31]" (or "+1.54 KiB [...]" for RSS) and whether the target is met
local function versus(id, kind, s, cm, om)
  if not (cm and om) then return "n/a", nil end
  local per = {}
  for r, v in pairs(data.c[id] or {}) do
    local w = data[s] and data[s][id] and data[s][id][r]
    if v and w then per[#per + 1] = kind == "plus" and (w - v) or (v ~= 0 and w / v or nil) end
  end
  table.sort(per)
  local f = kind == "plus" and "%+.2f" or "%.2f"
  local range = #per > 1 and string.format(" [" .. f .. "–" .. f .. "]", per[1], per[#per]) or ""
  if kind == "plus" then
    local d = om - cm
    return string.format("%+.2f KiB%s", d, range), d <= TARGET.plus
  end
  local ratio = om / cm
  local met = nil
  if kind == "ratio" then met = ratio <= TARGET.ratio end
  return string.format("%.2fx%s", ratio, range), met
end

for _, row in ipairs(ROWS) do
  local id, load, label, kind = row[1], row[2], row[3], row[4]
  if loads[load] then
    local cells, meds = { label }, {}
    for _, s in ipairs(servers) do
      local c, m = cell(data[s] and data[s][id])
      meds[s] = m
      cells[#cells + 1] = c
      if s ~= "c" and data.c then
        cells[#cells + 1] = kind == "info" and "" or versus(id, kind, s, meds.c, m)
      end
    end
    if data.c and #others > 0 then
      if kind == "ratio" or kind == "plus" then
        local verdicts = {}
        for _, s in ipairs(others) do
          local _, met = versus(id, kind, s, meds.c, meds[s])
          verdicts[#verdicts + 1] = (#others > 1 and (NAMES[s] or s) .. ": " or "")
            .. (met == nil and "n/a" or met and "**met**" or "**not met**")
        end
        cells[#cells + 1] = (kind == "plus" and string.format("≤ C + %.1f KiB: ", TARGET.plus)
          or string.format("≤ %.2fx: ", TARGET.ratio)) .. table.concat(verdicts, "; ")
      else
        cells[#cells + 1] = ""
      end
    end
    out[#out + 1] = "| " .. table.concat(cells, " | ") .. " |"
  end
end
print(table.concat(out, "\n"))
print()
print("Cells: median [min–max] of the repeats (`*`: some repeats failed). \"vs C\": the ratio of the")
print("medians [range of the per-repeat ratios: repeat r of every server ran back to back]; for RSS, the")
print("difference in KiB per connection. Lower is better for CPU, latency and RSS; higher for rates.")
