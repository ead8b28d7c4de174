-- heapsum.lua BASE.massif LOADED.massif CONNS: the heap a server holds
-- per idle connection, from two massif runs of the same server (BASE: started
-- and left alone; LOADED: the same with CONNS idle connections), using the
-- last snapshot of each. Bytes are split by who allocated them: OpenSSL
-- (libssl/libcrypto), the Lua heap (lua5.4: userdata, coroutines, tables,
-- strings), duplex's own C allocations, the C server's, each with the
-- nearest duplex or C server function on the stack. Used by profile.sh.
local base_f, loaded_f, conns = arg[1], arg[2], tonumber(arg[3] or "")
assert(base_f and loaded_f and conns, "usage: lua5.4 heapsum.lua BASE.massif LOADED.massif CONNS")

local function classify(frame)
  if frame:find("vgpreload", 1, true) then return nil end
  if frame:find("libcrypto", 1, true) or frame:find("libssl", 1, true) then return "OpenSSL" end
  if frame:find("lua5.4", 1, true) or frame:find("liblua", 1, true) or frame:find("luajit", 1, true) then return "Lua heap" end
  local file = frame:match("%(([%w_]+%.c):%d+%)")
  if file == "c_tls_server.c" or file == "c_server.c" then return "C server" end
  if file and (file:match("^dx_") or file:match("^l%w+%.c$")) then return "duplex core" end
  return nil                                  -- libc helpers and the like: look further out
end
local function ours(frame)                     -- a duplex core or C server function
  local fn, file = frame:match(":%s*([%w_]+)%s+%(([%w_]+%.c):%d+%)")
  if fn and (file == "c_tls_server.c" or file == "c_server.c" or file:match("^dx_") or file:match("^l%w+%.c$")) then return fn end
end

-- { [group .. " <- " .. fn] = bytes, total = heap + extra } of the last snapshot
local function read(file)
  local lines = {}
  for l in io.lines(file) do lines[#lines + 1] = l end
  local start, extra
  for i, l in ipairs(lines) do
    if l:match("^heap_tree=detailed") or l:match("^heap_tree=peak") then start = i + 1 end
  end
  for i = #lines, 1, -1 do
    local e = lines[i]:match("^mem_heap_extra_B=(%d+)")
    if e then extra = tonumber(e) break end
  end
  assert(start, file .. ": no detailed snapshot (run massif with --detailed-freq=1)")
  local agg, stack, total = {}, {}, 0
  for i = start, #lines do
    local ind, nch, bytes, desc = lines[i]:match("^( *)n(%d+): (%d+) (.*)$")
    if not ind then break end
    local depth = #ind
    for d = #stack, depth + 1, -1 do stack[d] = nil end
    stack[depth + 1] = desc
    bytes = tonumber(bytes)
    if depth == 0 then total = bytes
    elseif tonumber(nch) == 0 then
      local group, fn = nil, nil
      for d = 2, #stack do
        group = group or classify(stack[d])
        fn = fn or ours(stack[d])
        if group and fn then break end
      end
      if stack[#stack]:find("below massif's threshold", 1, true) then group = group or "(small, below threshold)" end
      local key = (group or "other") .. (fn and (" <- " .. fn) or "")
      agg[key] = (agg[key] or 0) + bytes
    end
  end
  agg["(malloc overhead and padding)"] = extra or 0
  return agg, total + (extra or 0)
end

local base, btotal = read(base_f)
local loaded, ltotal = read(loaded_f)
local rows, keys = {}, {}
for k in pairs(base) do keys[k] = true end
for k in pairs(loaded) do keys[k] = true end
for k in pairs(keys) do
  local d = (loaded[k] or 0) - (base[k] or 0)
  if math.abs(d) / conns >= 8 then rows[#rows + 1] = { k, d / conns } end
end
table.sort(rows, function(a, b) return a[2] > b[2] end)
print(string.format("heap per idle connection: %.0f B (%d connections; heap + malloc overhead %d -> %d B)",
  (ltotal - btotal) / conns, conns, btotal, ltotal))
for _, r in ipairs(rows) do print(string.format("  %8.0f B  %s", r[2], r[1])) end
