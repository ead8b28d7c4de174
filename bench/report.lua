-- report.lua RAW.tsv "servers" "loads" [FORWARD.tsv]: the raw measurements
-- as Markdown: one table (rows = loads, columns = servers; median of the
-- repeats, "figure (ratio to C)"), the forward load's table, the targets.
local HERE = arg[0]:match("^(.*)/") or "."
local F = dofile(HERE .. "/figures.lua")
local raw, fwd_raw = arg[1], arg[4]
local servers = F.words(arg[2] or "c duplex duplex_jit luasocket luv cqueues nginx nginx_lua copas copas_face")
local loads = {}
for _, l in ipairs(F.words(arg[3] or "keepalive close pingpong bulk idle forward")) do loads[l] = true end
local NAMES = F.NAMES

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
  { "idle_rss",  "idle",      "idle conns: server RSS KiB per connection", absolute = true },
  { "idle_cpu",  "idle",      "  server CPU µs per connection (accept + 1-byte echo)" },
}

local data = F.read(raw)
local out = {}
local function add(s) out[#out + 1] = s end
local function row(cells) add("| " .. table.concat(cells, " | ") .. " |") end

-- the main table
local header = { "load" }
for _, s in ipairs(servers) do header[#header + 1] = NAMES[s] or s end
row(header)
add("|" .. string.rep(" --- |", #header))
local partial, skipped, nostart = false, false, false
for _, r in ipairs(ROWS) do
  local id, load, label = r[1], r[2], r[3]
  if loads[load] then
    local cells = { label }
    local cmed = F.med(data, "c", id)
    for _, s in ipairs(servers) do
      local d = F.get(data, s, id)
      local v = F.median(d)
      local cell
      if v then
        cell = F.fmt(v)
        if not r.absolute then -- C holds almost no memory per connection: no ratio
          cell = cell .. (cmed and cmed ~= 0 and string.format(" (%.2fx)", v / cmed) or " (-)")
        end
        if d.fails > 0 then cell = cell .. " *"; partial = true end
      elseif d and d.fails > 0 then cell = "fails"
      elseif d and d.skips > 0 then cell = "—"; skipped = true
      elseif d and d.nas > 0 then cell = "did not start"; nostart = true
      else cell = "" end
      cells[#cells + 1] = cell
    end
    row(cells)
  end
end
add("")
add("Each cell: median over the repeats, then (figure / C epoll's figure). "
  .. "Higher is better for req/s, msg/s and GB/s; lower for latency, CPU, seconds and RSS. "
  .. "CPU is the server process's on-CPU time during the load, divided by the work done. "
  .. "Memory per idle connection has no ratio: C holds almost none, and its target is absolute. "
  .. "\"fails\": every repeat failed (server died, load errors, or time-out).")
if skipped then add("\"—\": not applicable (nginx answers only the HTTP loads).") end
if nostart then add("\"did not start\": see out/logs/*.server.err.") end
if partial then add("\"*\": some repeats failed; the median is over the others.") end

-- the forward load (forward.sh): throughput through each forwarder
local fwd = F.read(fwd_raw)
local function has_fwd()
  for _, s in ipairs(F.FORWARDERS) do if fwd[s] then return true end end
end
if loads.forward and has_fwd() then
  add("")
  add("Forward load (bench/forward.sh): redis-benchmark -P 16 to redis-server, directly or through a forwarder.")
  add("")
  row({ "forwarder", "SET req/s", "GET req/s", "forwarder CPU-s per 1M requests" })
  add("| --- | --- | --- | --- |")
  for _, s in ipairs(F.FORWARDERS) do
    if fwd[s] then
      local cells = { NAMES[s] }
      for _, m in ipairs({ "fwd_set_rps", "fwd_get_rps", "fwd_cpu" }) do
        local d, v = F.get(fwd, s, m), F.med(fwd, s, m)
        local cell
        if v then
          local notes = {}
          local direct = F.med(fwd, "direct", m)
          if m ~= "fwd_cpu" and direct and direct ~= 0 then notes[#notes + 1] = string.format("%.0f%%", 100 * v / direct) end
          local hr = s ~= "direct" and F.ratio(fwd, s, m, "haproxy")
          if hr then notes[#notes + 1] = string.format("%.2fx", hr) end
          cell = F.fmt(v) .. (#notes > 0 and " (" .. table.concat(notes, "; ") .. ")" or "")
          if d.fails > 0 then cell = cell .. " *" end
        elseif d and d.fails > 0 then cell = "fails"
        else cell = "—" end
        cells[#cells + 1] = cell
      end
      row(cells)
    end
  end
  add("")
  add("req/s cells: median, then (% of direct; ratio to HAProxy). CPU: the forwarder process's "
    .. "CPU-seconds per million requests (ratio to HAProxy); lower is better. \"—\": no forwarder.")
end

-- duplex on LuaJIT against duplex on 5.4 (issue 18)
local function listed(s) for _, x in ipairs(servers) do if x == s then return true end end end
if listed("duplex") and listed("duplex_jit") then
  add("")
  add("duplex on LuaJIT against duplex on Lua 5.4 (issue 18: on every load, no more server CPU per operation):")
  add("")
  add("| load | duplex (5.4) | duplex (LuaJIT) | LuaJIT / 5.4 | | per-repeat ratios |")
  add("| --- | --- | --- | --- | --- | --- |")
  for _, t in ipairs(F.JIT_LOADS) do
    if loads[t.load] then
      local a, b = F.med(data, "duplex", t.id), F.med(data, "duplex_jit", t.id)
      local rr = F.ratio(data, "duplex_jit", t.id, "duplex")
      local lo, hi = F.ratio_range(data, "duplex_jit", t.id, "duplex")
      row({ t.label, a and F.fmt(a) or "not measured", b and F.fmt(b) or "not measured",
            rr and string.format("%.2fx", rr) or "",
            rr and (rr <= F.JIT_MAX + 1e-9 and "met" or "not met") or "",
            lo and string.format("%.2f–%.2fx", lo, hi) or "" })
    end
  end
  if loads.idle then
    local a, b = F.med(data, "duplex", "idle_rss"), F.med(data, "duplex_jit", "idle_rss")
    local lo, hi = F.ratio_range(data, "duplex_jit", "idle_rss", "duplex")
    row({ "idle connections, server RSS KiB per connection", a and F.fmt(a) or "not measured",
          b and F.fmt(b) or "not measured", a and b and a ~= 0 and string.format("%.2fx", b / a) or "",
          "", lo and string.format("%.2f–%.2fx", lo, hi) or "" })
  end
  add("")
  add("The same server (servers/duplex.lua) and the same Lua files, run by lua5.4 with build/duplex/core.so "
    .. "and by LuaJIT (Debian's luajit2, OpenResty's branch) with build/luajit/duplex/core.so (make LUA=luajit). "
    .. "What differs on LuaJIT: it cannot resume a C function after a yield, so every call that may wait "
    .. "goes through a Lua wrapper (csrc/ldrive.c: a wait yields the call's stack, the wrapper hands it back "
    .. "to the driver), and it interns every string a read returns (5.4 only short ones); bench/README.md says more. "
    .. "LuaJIT / 5.4: the ratio of the medians, \"met\" when at most 1.00x; per-repeat ratios: the lowest and "
    .. "highest within one repeat (the two run back to back). Memory has no target, only the figures.")
end

-- copas on LuaSocket against the same copas on duplex.socket (issue 19)
if listed("copas") and listed("copas_face") then
  add("")
  add("copas on duplex.socket (LuaSocket's face) against copas on LuaSocket (issue 19: less server CPU "
    .. "per request, and 10,000 idle connections held where LuaSocket's select cannot):")
  add("")
  add("| load | copas on LuaSocket | copas on duplex.socket | face / LuaSocket | | per-repeat ratios |")
  add("| --- | --- | --- | --- | --- | --- |")
  local function cmp(id, label, better_low)
    local a, b = F.med(data, "copas", id), F.med(data, "copas_face", id)
    local rr = F.ratio(data, "copas_face", id, "copas")
    local lo, hi = F.ratio_range(data, "copas_face", id, "copas")
    row({ label, a and F.fmt(a) or "fails", b and F.fmt(b) or "fails",
          rr and string.format("%.2fx", rr) or "",
          better_low and rr and (rr <= 1 + 1e-9 and "met" or "not met") or "",
          lo and string.format("%.2f–%.2fx", lo, hi) or "" })
  end
  if loads.keepalive then
    cmp("ka_cpu", "HTTP keep-alive, server CPU µs per request", true)
    cmp("ka_rps", "HTTP keep-alive, req/s", false)
  end
  if loads.idle then
    local a, b = F.med(data, "copas", "idle_rss"), F.med(data, "copas_face", "idle_rss")
    row({ "idle connections held (KiB RSS per connection)", a and F.fmt(a) or "fails",
          b and F.fmt(b) or "fails", "", b and not a and "met" or (a and b and "both hold" or "not met"), "" })
    cmp("idle_cpu", "idle: server CPU µs per connection (copas's select is O(n) per wake)", false)
  end
  add("")
  add("The same server (servers/copas.lua: Debian's lua-copas, one coroutine per connection) on Debian's "
    .. "LuaSocket and, with require \"duplex.luasocket\" first, on duplex.socket; nothing else differs. "
    .. "\"fails\" on the idle load: LuaSocket's select refuses more than 1,024 descriptors (FD_SETSIZE).")
end

-- the targets of issue 10, for duplex
add("")
add("Against the targets of issue 10:")
add("")
add("| target | duplex | | per-repeat ratios |")
add("| --- | --- | --- | --- |")
local function verdict(ok) return ok and "met" or "not met" end
for _, t in ipairs(F.CPU_TARGETS) do
  if loads[t.load] then
    local rr = F.ratio(data, "duplex", t.id)
    local lo, hi = F.ratio_range(data, "duplex", t.id)
    row({ string.format("%s ≤ %.2fx C", t.label, t.max),
          rr and string.format("%.2fx", rr) or "not measured",
          rr and verdict(rr <= t.max + 1e-9) or "",
          lo and string.format("%.2f–%.2fx", lo, hi) or "" })
  end
end
if loads.idle then
  local v = F.med(data, "duplex", "idle_rss")
  row({ string.format("memory per idle connection ≤ %.2f KiB", F.IDLE_MAX_KIB),
        v and string.format("%.2f KiB", v) or "not measured", v and verdict(v <= F.IDLE_MAX_KIB) or "", "" })
end
if loads.forward then
  local set = F.ratio(fwd, "duplex_fwd", "fwd_set_rps", "haproxy")
  local get = F.ratio(fwd, "duplex_fwd", "fwd_get_rps", "haproxy")
  row({ "forwarder throughput ≥ HAProxy's (SET / GET)",
        set and get and string.format("%.2fx / %.2fx", set, get) or "not measured",
        set and get and verdict(set >= 1 and get >= 1) or "", "" })
end
add("")
add("Per-repeat ratios: the lowest and highest duplex/C ratio within one repeat (repeat r of every "
  .. "server runs back to back), which shows how far the machine's drift moves a ratio; the verdict "
  .. "uses the ratio of the medians.")
print(table.concat(out, "\n"))
