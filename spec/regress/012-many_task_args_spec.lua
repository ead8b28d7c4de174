-- Symptom: duplex.run(fn, ...) and duplex.spawn(fn, ...) with many
-- arguments crashed the process: heap corruption from about 60 arguments,
-- SIGSEGV with 5,000.
-- Cause: spawn_task moved the function and its arguments into the new
-- coroutine with lua_xmove without first growing the coroutine's stack
-- (lua_checkstack), so the values were written past its end.
-- Fix: the coroutine's stack is grown first (an argument error when it
-- cannot hold them); every argument reaches the task.
--
-- The crash would kill busted, so each case runs in a child Lua process
-- and the spec asserts on its output and exit status.
local helpers = require "spec.helpers"

-- Run a Lua script in a child process; returns its output (stdout and
-- stderr) and how it ended, as io.popen's close reports it. Bounded:
-- `timeout` kills the child after 10 s.
local function child(script)
  local out, ok, how, code = helpers.readall("timeout -k 2 10 " .. helpers.lua .. " -e "
    .. helpers.shquote(script) .. " 2>&1")
  return (out:gsub("\n$", "")), how, code, ok
end

-- Shared head of the child scripts: n arguments "v1".."vn", and a checker
-- that every argument arrived in order.
local head = [[
local duplex = require "duplex"
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack
local N = tonumber(...) or 5000
local t = {}
for i = 1, N do t[i] = "v" .. i end
local function check(...)
  local n = select("#", ...)
  local args = { ... }
  for i = 1, N do
    if args[i] ~= "v" .. i then return n, "argument " .. i .. " is " .. tostring(args[i]) end
  end
  return n, (select(N, ...))
end
]]

local function expect(script, n)
  local out, how, code, ok = child(head:gsub("tonumber%(%.%.%.%)", tostring(n)) .. script)
  assert.same({ true, "exit", 0 }, { ok, how, code }, "child output:\n" .. out)
  assert.equal(string.format("%d\tv%d", n, n), out)
end

describe("regression 012: tasks started with many arguments", function()
  it("run passes 5,000 arguments to its function", function()
    expect([[
print(duplex.run(function(...)
  return select("#", ...), (select(N, ...))
end, unpack(t, 1, N)))
]], 5000)
  end)

  it("run passes 5,000 arguments intact and in order", function()
    expect([[
print(duplex.run(check, unpack(t, 1, N)))
]], 5000)
  end)

  it("spawn passes 5,000 arguments to its task (joined inside run)", function()
    expect([[
print(duplex.run(function()
  local task = duplex.spawn(check, unpack(t, 1, N))
  local ok, n, last = task:join(5)
  assert(ok, n)
  return n, last
end))
]], 5000)
  end)

  it("run and spawn pass 60 arguments without corrupting memory", function()
    expect([[
local a = pack(duplex.run(function()
  local tasks = {}
  for k = 1, 20 do tasks[k] = duplex.spawn(check, unpack(t, 1, N)) end
  for k = 1, 20 do
    local ok, n, last = tasks[k]:join(5)
    assert(ok and n == N and last == "v" .. N, tostring(n) .. " " .. tostring(last))
  end
  collectgarbage()
  return check(unpack(t, 1, N))
end))
collectgarbage()
print(unpack(a, 1, a.n))
]], 60)
  end)
end)
