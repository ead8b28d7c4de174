-- floor.lua [N]: the Lua heap a coroutine costs while it waits the way a
-- duplex task waits for a read (suspended inside a C function called from
-- a Lua function), the floor of "one task per connection" in this Lua,
-- whatever the library. Counted with collectgarbage("count") after a full
-- collection, over N coroutines (default 10000) kept in an array.
-- Run: lua5.4 floor.lua [N]   (profile.sh prints it beside massif's figure;
-- luajit floor.lua for duplex on LuaJIT)
local n = tonumber(arg[1] or "10000")
assert(n and n > 0 and n == math.floor(n), "usage: lua5.4 floor.lua [N]")

local function waiter() coroutine.yield() end -- coroutine.yield: a C function

local function heap()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count") * 1024
end

local keep = {}
for i = 1, n do keep[i] = false end -- the array part first: its slots are not the coroutine's
local before = heap()
for i = 1, n do
  local co = coroutine.create(waiter)
  assert(coroutine.resume(co))
  keep[i] = co
end
local after = heap()
print(string.format("a coroutine suspended in a C call: %.0f B of Lua heap (%s, %d coroutines)",
  (after - before) / n, jit and jit.version or _VERSION, n))
