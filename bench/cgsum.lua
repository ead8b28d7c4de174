-- cgsum.lua FILE [OPS [TOP]]: summarize a callgrind output file (Ir only):
-- instructions per operation by object (library) and the TOP functions by
-- self cost, the inclusive cost of the functions named in FN,FN... (a
-- recursive function's is overstated); and a "PEROP ..." line (thousands of instructions per operation
-- by group: OpenSSL, libc, Lua, duplex core, C server, other).
-- OPS divides every figure (handshakes, messages, ...). Used by
-- profile.sh; callgrind_annotate prints the same self costs, this adds
-- the per-library split.
local file, ops, top, incl = arg[1], tonumber(arg[2] or "1"), tonumber(arg[3] or "25"), arg[4]
assert(file, "usage: lua5.4 cgsum.lua CALLGRIND.OUT [OPS [TOP [FN,FN...]]]")

local names = { ob = {}, fl = {}, fn = {} }
-- "(id) name" defines id, "(id)" refers to it
local function name(kind, s)
  local id, rest = s:match("^%((%d+)%)%s*(.*)$")
  if not id then return s end
  if rest ~= "" then names[kind][id] = rest end
  return names[kind][id] or ("(" .. id .. ")")
end

local self_fn, self_ob, incl_fn, fn_ob = {}, {}, {}, {}
local total = 0
local ob, fn, in_call = "?", "?", false
for line in io.lines(file) do
  local key, val = line:match("^(%a+)=(.*)$")
  if key then
    if key == "ob" then ob = name("ob", val)
    elseif key == "fn" then fn = name("fn", val); fn_ob[fn] = ob
    elseif key == "fl" or key == "fi" or key == "fe" then name("fl", val)
    elseif key == "cob" then name("ob", val)
    elseif key == "cfi" or key == "cfl" then name("fl", val)
    elseif key == "cfn" then name("fn", val)
    elseif key == "calls" then in_call = true
    elseif key == "summary" or key == "totals" then total = tonumber(val:match("%d+")) or total
    end
  elseif line:match("^[%+%-%d%*]") then
    local cost = tonumber(line:match("^%S+%s+(%d+)")) or 0
    if in_call then
      incl_fn[fn] = (incl_fn[fn] or 0) + cost  -- a call's cost counts in the caller's inclusive cost
      in_call = false
    else
      self_fn[fn] = (self_fn[fn] or 0) + cost
      self_ob[ob] = (self_ob[ob] or 0) + cost
      incl_fn[fn] = (incl_fn[fn] or 0) + cost
    end
  end
end
if total == 0 then for _, v in pairs(self_ob) do total = total + v end end

local function short(ob_name)
  return (ob_name:gsub("^.*/", ""))
end
local function sorted(t)
  local a = {}
  for k, v in pairs(t) do a[#a + 1] = { k, v } end
  table.sort(a, function(x, y) return x[2] > y[2] end)
  return a
end
local function k(v) return string.format("%11.3fk", v / ops / 1e3) end

print(string.format("%s: %.0f instructions in all, %.1fk per operation (%g operations)",
  file, total, total / ops / 1e3, ops))
print("\nby object (self cost, thousands of instructions per operation):")
for _, e in ipairs(sorted(self_ob)) do
  if e[2] / total >= 0.001 then
    print(string.format("  %s  %5.1f%%  %s", k(e[2]), 100 * e[2] / total, short(e[1])))
  end
end
-- one line for profile.sh's table: thousands of instructions per operation
local groups = { openssl = 0, libc = 0, lua = 0, duplex = 0, cserver = 0, other = 0 }
for o, v in pairs(self_ob) do
  local n = short(o)
  local g = (n:match("^libcrypto") or n:match("^libssl")) and "openssl" or n:match("^libc%.") and "libc"
    or (n:match("^lua5") or n:match("^liblua") or n:match("^luajit")) and "lua" or n == "core.so" and "duplex"
    or (n == "c_tls_server" or n == "c_server") and "cserver" or "other"
  groups[g] = groups[g] + v
end
local parts = { string.format("PEROP total=%.3f", total / ops / 1e3) }
for _, g in ipairs { "openssl", "libc", "lua", "duplex", "cserver", "other" } do
  parts[#parts + 1] = string.format("%s=%.3f", g, groups[g] / ops / 1e3)
end
print("\n" .. table.concat(parts, " "))
print("\ntop functions by self cost:")
for i, e in ipairs(sorted(self_fn)) do
  if i > top then break end
  print(string.format("  %s  %5.1f%%  %s [%s]", k(e[2]), 100 * e[2] / total, e[1], short(fn_ob[e[1]] or "?")))
end
if incl then
  print("\ninclusive cost (self + callees):")
  for f in incl:gmatch("[^,]+") do
    print(string.format("  %s  %s", incl_fn[f] and k(incl_fn[f]) or "        -  ", f))
  end
end
