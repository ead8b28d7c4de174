-- Symptom: during a graceful shutdown under descriptor exhaustion, a
-- server:serve loop raised "attempt to use a closed duplex.server" (from
-- duplex.run, or from the task running serve) instead of returning true.
-- Cause: after an accept error such as EMFILE, serve reported it, slept
-- 50 ms to let other tasks finish, and called accept again without
-- checking whether the server had been closed during that sleep.
-- Fix: serve returns true when the server was closed during its back-off,
-- as it does when the server is closed while it waits in accept.
--
-- The scenario runs in a child process whose descriptor limit is 40: the
-- process connects to its own server until connect fails with EMFILE, so
-- serve's accept fails with EMFILE too; once serve has reported that (and
-- is backing off), the server is closed.
local helpers = require "spec.helpers"

local script = [[
local duplex = require "duplex"
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local emfile, other = 0, {}
duplex.onerror(function(err)
  err = tostring(err)
  if err:find("Too many open files", 1, true) or err:find("EMFILE", 1, true) then
    emfile = emfile + 1
  else
    other[#other + 1] = err
  end
end)

-- Connect to srv until the descriptors run out (without yielding, so serve
-- accepts none of these); returns the clients.
local function exhaust(port)
  local clients, last = {}, nil
  for _ = 1, 1000 do
    local c, _, code = duplex.connect("127.0.0.1", port, { timeout = 5 })
    if not c then last = code; break end
    clients[#clients + 1] = c
  end
  assert(last == "EMFILE", "connect stopped with " .. tostring(last))
  return clients
end

-- Wait (bounded) until serve has reported an accept error: it is backing off.
local function wait_report(before)
  local deadline = duplex.now() + 5
  while emfile == before and duplex.now() < deadline do duplex.sleep(0.001) end
  assert(emfile > before, "serve reported no EMFILE")
end

local function say(...) io.stdout:write(...); io.stdout:write("\n"); io.stdout:flush() end

-- 1. serve in a task of its own, joined
local r1 = pack(pcall(duplex.run, function()
  local srv = assert(duplex.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local serving = duplex.spawn(function()
    return srv:serve(function() end)
  end)
  local clients = exhaust(port)
  wait_report(0)
  srv:close()                             -- while serve sleeps after EMFILE
  for _, c in ipairs(clients) do c:close() end
  local r = pack(serving:join(5))
  return r.n, r[1], r[2]
end))
say("task: ", tostring(r1[1]), ", ", tostring(r1[2]), ", ", tostring(r1[3]), ", ", tostring(r1[4]))

-- 2. serve as run's main function
local before = emfile
local r2 = pack(pcall(duplex.run, function()
  local srv = assert(duplex.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  duplex.spawn(function()
    local clients = exhaust(port)
    wait_report(before)
    srv:close()                           -- while serve sleeps after EMFILE
    for _, c in ipairs(clients) do c:close() end
  end)
  return srv:serve(function() end)
end))
say("run: ", tostring(r2[1]), ", ", tostring(r2[2]))
say("other reports: ", #other, #other > 0 and (" " .. other[1]) or "")
say("done")
]]

describe("regression 005: server:serve when the server is closed during its back-off after EMFILE", function()
  it("returns true, in a task and as run's main function", function()
    local cmd = "timeout -k 2 30 sh -c " .. helpers.shquote("ulimit -n 40 && exec "
      .. helpers.lua .. " -e " .. helpers.shquote(script)) .. " 2>&1"
    local out, ok, how, code = helpers.readall(cmd)
    -- serve's task returned (1 value) true; run returned serve's true
    assert.equal("task: true, 2, true, true\nrun: true, true\nother reports: 0\ndone\n", out)
    assert.same({ true, "exit", 0 }, { ok, how, code }, out)
  end)
end)
