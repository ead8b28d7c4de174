-- chart.lua RAW.tsv FORWARD.tsv OUT.svg "servers" "note": the results as
-- an SVG bar chart, no dependencies. Top: server CPU per operation as a
-- ratio to C, one group per load, one bar per server. Below: memory per
-- idle connection (KiB) and the forward load's throughput as a ratio to
-- HAProxy. Axes are linear from 0 and stop at a fixed top: a longer bar is
-- cut with a zigzag and carries its value (a log axis would make the 1.0
-- to 1.1 band that the targets live in too thin to read).
local HERE = arg[0]:match("^(.*)/") or "."
local F = dofile(HERE .. "/figures.lua")
local data, fwd = F.read(arg[1]), F.read(arg[2])
local out_path = arg[3] or "results.svg"
local servers = F.words(arg[4] or "c duplex duplex_jit luasocket luv cqueues nginx nginx_lua")
local note = arg[5] or ""

local COLORS = {
  c = "#4d4d4d", duplex = "#e15759", duplex_jit = "#9c1f2e", luasocket = "#f28e2b", luv = "#76b7b2", cqueues = "#b07aa1",
  nginx = "#59a14f", nginx_lua = "#edc948",
  direct = "#4d4d4d", haproxy = "#4e79a7", duplex_fwd = "#e15759", duplex_pump = "#ff9d9a",
}
local W, H = 960, 640
local FONT = "DejaVu Sans, Arial, Helvetica, sans-serif"

local svg = {}
local function add(...) svg[#svg + 1] = string.format(...) end
local function esc(s) return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;")) end
-- o: size, anchor, weight, fill, halo (white outline, to stay readable over
-- lines), rotate (degrees about x, y)
local function text(x, y, s, o)
  o = o or {}
  add('<text x="%.1f" y="%.1f" font-size="%d"%s%s%s%s%s>%s</text>', x, y, o.size or 11,
    o.anchor and string.format(' text-anchor="%s"', o.anchor) or "",
    o.weight and string.format(' font-weight="%s"', o.weight) or "",
    o.fill and string.format(' fill="%s"', o.fill) or "",
    o.halo and ' stroke="#fff" stroke-width="3" stroke-linejoin="round" paint-order="stroke"' or "",
    o.rotate and string.format(' transform="rotate(%d %.1f %.1f)"', o.rotate, x, y) or "", esc(s))
end
local function line(x1, y1, x2, y2, stroke, width, dash)
  add('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"%s/>', x1, y1, x2, y2,
    stroke, width or 1, dash and string.format(' stroke-dasharray="%s"', dash) or "")
end
local function textw(s, size) return utf8.len(s) * size * 0.6 end

-- an axis top: the largest value plus room for its label, within [lo, hi]
local function axis_top(values, lo, hi, step)
  local m = lo
  for _, v in ipairs(values) do m = math.max(m, v + step / 2) end
  return math.min(hi, math.ceil(m / step - 1e-9) * step)
end

--[[ One panel of grouped bars. p: x0, y0, x1, y1 (plot area), top, step,
  tick (format of an axis label), fmt (function: a bar's value), groups = { { label,
  sub, bars = { { key, value | fail = true } } } }, ref = { value, label }
  (solid line), target = { value or per-group values, label } (dashed). ]]
local function panel(p)
  local ph = p.y1 - p.y0
  local function ypos(v) return p.y1 - math.min(v, p.top) / p.top * ph end
  local v = 0
  while v <= p.top + 1e-9 do
    line(p.x0, ypos(v), p.x1, ypos(v), "#e6e6e6", 1)
    text(p.x0 - 6, ypos(v) + 4, string.format(p.tick, v), { anchor = "end", size = 10, fill = "#666" })
    v = v + p.step
  end
  if p.ref then
    line(p.x0, ypos(p.ref[1]), p.x1, ypos(p.ref[1]), "#333", 1.2)
    text(p.x1 + 6, ypos(p.ref[1]) + 4, p.ref[2], { size = 10, fill = "#333" })
  end
  local gw = (p.x1 - p.x0) / #p.groups
  local labels = {} -- drawn last, over the lines
  for gi, g in ipairs(p.groups) do
    local gx = p.x0 + (gi - 1) * gw
    local n = #g.bars
    local bw = math.min(34, (gw - 24) / math.max(n, 1))
    local bx = gx + (gw - n * bw) / 2
    for i, b in ipairs(g.bars) do
      local x, w = bx + (i - 1) * bw + 1.5, bw - 3
      local color = COLORS[b.key] or "#999"
      if b.fail then
        text(x + w / 2 + 3, p.y1 - 4, "fails", { size = 10, fill = color, rotate = -90, weight = "bold" })
      else
        local y = ypos(b.value)
        add('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s</title></rect>',
          x, y, w, p.y1 - y, color, esc(F.NAMES[b.key] or b.key), esc(p.fmt(b.value)))
        if b.value > p.top then -- cut: a white zigzag across the bar
          local zy = y + 10
          add('<polyline points="%.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f" fill="none" stroke="#fff" stroke-width="2.5"/>',
            x - 1, zy, x + w * 0.25, zy - 4, x + w * 0.5, zy + 1, x + w * 0.75, zy - 4, x + w + 1, zy)
        end
        labels[#labels + 1] = { x + w / 2, y - 3, p.fmt(b.value) }
      end
    end
    local tv = p.target and (type(p.target[1]) == "table" and p.target[1][gi] or p.target[1])
    if tv and n > 0 then line(gx + 6, ypos(tv), gx + gw - 6, ypos(tv), "#000", 1.5, "6 4") end
    text(gx + gw / 2, p.y1 + 16, g.label, { anchor = "middle", size = 12, weight = "bold" })
    if g.sub then text(gx + gw / 2, p.y1 + 30, g.sub, { anchor = "middle", size = 10, fill = "#555" }) end
  end
  line(p.x0, p.y1, p.x1, p.y1, "#333", 1)
  for _, l in ipairs(labels) do text(l[1], l[2], l[3], { size = 10, anchor = "middle", halo = true }) end
  if p.target and type(p.target[1]) == "number" then
    text(p.x1 + 6, ypos(p.target[1]) + (p.ref and math.abs(ypos(p.target[1]) - ypos(p.ref[1])) < 12 and -4 or 4),
      p.target[2], { size = 10 })
  end
end

local function ratio(v) return string.format("%.2f", v) end

local function bar_of(d, key, value)
  if value then return { key = key, value = value } end
  if d and d.fails > 0 then return { key = key, fail = true } end
end

local function nodata(x0, y0, x1, y1, s)
  add('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#f7f7f7" stroke="#ddd"/>', x0, y0, x1 - x0, y1 - y0)
  text((x0 + x1) / 2, (y0 + y1) / 2, s, { anchor = "middle", size = 11, fill = "#777" })
end

add('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s">', W, H, W, H, FONT)
add('<rect width="%d" height="%d" fill="#fff"/>', W, H)
text(20, 28, "Server CPU per operation, as a ratio to a C epoll server (lower is better)", { size = 17, weight = "bold" })
text(20, 47, "C = 1.0; dashed: the target of issue 10 (1.10x). " .. note, { size = 11, fill = "#444" })

-- legend: the servers that have a figure somewhere
local lx = 20
for _, s in ipairs(servers) do
  if data[s] then
    add('<rect x="%.1f" y="60" width="12" height="12" fill="%s"/>', lx, COLORS[s] or "#999")
    text(lx + 16, 70, F.NAMES[s] or s, { size = 11 })
    lx = lx + 16 + textw(F.NAMES[s] or s, 11) + 16
  end
end

-- top panel: CPU ratios
local SUBS = { ka_cpu = "per request", cl_cpu = "per connection", pp_cpu = "per message", bulk_cpu = "per GB" }
local groups, values = {}, {}
for _, t in ipairs(F.CPU_TARGETS) do
  local g = { label = t.short, sub = "CPU " .. SUBS[t.id], bars = {} }
  for _, s in ipairs(servers) do
    local r = F.ratio(data, s, t.id)
    local b = bar_of(F.get(data, s, t.id), s, r)
    if b then g.bars[#g.bars + 1] = b; values[#values + 1] = r end
  end
  if #g.bars > 0 then groups[#groups + 1] = g end
end
if #groups > 0 then
  panel({ x0 = 60, y0 = 100, x1 = 850, y1 = 330, top = axis_top(values, 1.5, 2.0, 0.25), step = 0.25,
    tick = "%.2fx", fmt = ratio, groups = groups, ref = { 1.0, "C = 1.0" },
    target = { F.CPU_TARGETS[1].max, string.format("target %.2fx", F.CPU_TARGETS[1].max) } })
else
  nodata(60, 100, 850, 330, "no CPU figures in this run")
end

-- bottom left: memory per idle connection, absolute
text(20, 400, "Memory per idle connection (KiB, lower is better)", { size = 13, weight = "bold" })
text(20, 416, string.format("server RSS growth / connections; dashed: target %.2f KiB", F.IDLE_MAX_KIB), { size = 10, fill = "#555" })
local ig = { label = "KiB per connection", bars = {} }
values = {}
for _, s in ipairs(servers) do
  local v = F.med(data, s, "idle_rss")
  local b = bar_of(F.get(data, s, "idle_rss"), s, v)
  if b then ig.bars[#ig.bars + 1] = b; values[#values + 1] = v end
end
if #ig.bars > 0 then
  panel({ x0 = 60, y0 = 440, x1 = 390, y1 = 580, top = axis_top(values, 1.5, 3, 0.5), step = 0.5,
    tick = "%.1f", fmt = F.fmt, groups = { ig },
    target = { F.IDLE_MAX_KIB, string.format("target %.2f", F.IDLE_MAX_KIB) } })
else
  nodata(60, 440, 390, 580, "idle load not measured")
end

-- bottom right: forward throughput, ratio to HAProxy
text(500, 400, "Forward: throughput as a ratio to HAProxy (higher is better)", { size = 13, weight = "bold" })
text(500, 416, "redis-benchmark -P 16; dashed: target, at least HAProxy's", { size = 10, fill = "#555" })
local fg = {}
values = {}
for _, m in ipairs({ { "fwd_set_rps", "SET" }, { "fwd_get_rps", "GET" } }) do
  local g = { label = m[2], bars = {} }
  for _, s in ipairs(F.FORWARDERS) do
    local r = F.ratio(fwd, s, m[1], "haproxy")
    local b = bar_of(F.get(fwd, s, m[1]), s, r)
    if b then g.bars[#g.bars + 1] = b; values[#values + 1] = r end
  end
  if #g.bars > 0 then fg[#fg + 1] = g end
end
if #fg > 0 then
  lx = 500
  for _, s in ipairs(F.FORWARDERS) do
    if fwd[s] then
      add('<rect x="%.1f" y="424" width="10" height="10" fill="%s"/>', lx, COLORS[s])
      text(lx + 13, 433, F.NAMES[s], { size = 10 })
      lx = lx + 13 + textw(F.NAMES[s], 10) + 12
    end
  end
  panel({ x0 = 540, y0 = 450, x1 = 850, y1 = 580, top = axis_top(values, 1.5, 3, 0.5), step = 0.5,
    tick = "%.1fx", fmt = ratio, groups = fg, target = { 1.0, "HAProxy" } })
else
  nodata(540, 450, 850, 580, "forward load not measured (bench/forward.sh)")
end

text(20, H - 12, "Axes start at 0; a bar past the top is cut (white zigzag) and labelled with its value. "
  .. "Figures: bench/RESULTS.md; how they are made: bench/README.md.", { size = 10, fill = "#555" })
add("</svg>")

local f = assert(io.open(out_path, "w"))
f:write(table.concat(svg, "\n"), "\n")
f:close()
