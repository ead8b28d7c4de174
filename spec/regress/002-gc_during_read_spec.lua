-- Symptom: with finalizers that use sockets, a read could return bytes that
-- another connection's peer sent, lose its own bytes (and time out), or read
-- freed memory (heap-use-after-free under ASan, garbage bytes otherwise)
-- when a finalizer closed the client being read.
-- Cause: a read built its result strings with lua_pushlstring straight from
-- the receive buffer, or from the shared 64 KiB scratch area that an empty
-- buffer borrows. Creating a string may run a GC step and so any __gc
-- finalizer: one that read another connection received into the same
-- scratch area, overwriting the bytes not pushed yet (and the rest that
-- settle later copied); one that closed the client freed the buffer under
-- the read's pointer.
-- Fix: a read holds no pointer into a receive buffer or the scratch area
-- while it creates strings (what it takes is settled first), so every read
-- returns exactly its own peer's bytes, in order, whatever finalizers do
-- meanwhile; a finalizer that closes the client being read does not crash
-- and the read in progress still returns its values.
--
-- The scenarios run in child processes: they change the collector's
-- parameters (a whole cycle on almost every allocation, cheap only in a
-- small heap), and under ASan the old code aborts the process.
local helpers = require "spec.helpers"

-- Run a Lua script in a child process, killed after `limit` seconds:
-- returns its output (stdout and stderr), then ok, how, code of the exit.
local function run_child(script, limit)
  local cmd = string.format("timeout -k 2 %d %s -e %s 2>&1", limit or 20,
    helpers.lua, helpers.shquote(script))
  return helpers.readall(cmd)
end

-- Shared by the child scripts: a connected TCP pair on loopback; the
-- collector set to run a whole cycle, finalizers included, on almost every
-- allocation, so that creating a result string runs pending finalizers;
-- and a check that ends the child at the first wrong result (later reads
-- would only wait for bytes that went astray).
local prelude = [[
local duplex = require "duplex"
local function pair()
  local srv = assert(duplex.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
  local p = assert(srv:accept(5))
  srv:close()
  c:settimeout(2)             -- every read's bytes were sent before it
  p:settimeout(2)
  return c, p
end
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
-- garbage with the finalizer mt.__gc (on 5.1 and LuaJIT, where a table
-- takes no __gc, a userdata of newproxy's)
local function garbage(mt)
  if newproxy then
    local u = newproxy(true)
    getmetatable(u).__gc = mt.__gc
    return u
  end
  return setmetatable({}, mt)
end
local function hot_gc()                       -- pause 0, stepmul 250 (5.4's units)
  if _VERSION == "Lua 5.4" then return collectgarbage("incremental", 1, 1000) end
  collectgarbage("setpause", 1)
  collectgarbage("setstepmul", 1000)
end
local function cool_gc()                      -- the defaults
  if _VERSION == "Lua 5.4" then return collectgarbage("incremental", 200, 100, 13) end
  collectgarbage("setpause", 200)
  collectgarbage("setstepmul", 200)
end
local function check(what, want, got)
  local same = got.n == #want
  for i = 1, #want do same = same and got[i] == want[i] end
  if not same then
    cool_gc()
    local w, g = {}, {}
    for i = 1, #want do w[i] = string.format("%q", want[i]) end
    for i = 1, got.n do g[i] = string.format("%q", tostring(got[i])) end
    io.stdout:write("MISMATCH ", what, ": want ", table.concat(w, ", "),
      "; got ", table.concat(g, ", "), "\n")
    os.exit(1)
  end
end
-- `provoked`: how many reads had a finalizer do its work in the middle
-- (none would mean the scenario no longer tests anything).
local function finish(n, provoked)
  cool_gc()
  if provoked == 0 then
    io.stdout:write("NOT PROVOKED: no finalizer ran during a read\n")
    os.exit(1)
  end
  io.stdout:write("ok ", n, "\n")
end
]]

-- Finalizers read connection B (its peer's bytes pending in the kernel)
-- while the main code reads connection A; every value of both streams is
-- checked. Outside duplex.run, or as run's main task.
local function two_streams(inside_run)
  return prelude .. string.format("local INSIDE, N = %s, 300\n", tostring(inside_run)) .. [[
local function main()
  local a, pa = pair()
  local b, pb = pair()
  b:settimeout(0)                         -- finalizers never wait
  local active, sent_b, got_b = true, {}, {}
  local reading, provoked = false, 0
  local mt = { __gc = function()
    if not active then return end
    local s = b:readsome()                -- nil, msg, "EAGAIN" when nothing is there
    if s then
      got_b[#got_b + 1] = s
      if reading then provoked = provoked + 1 end
    end
  end }
  hot_gc()
  for i = 1, N do
    -- A's records are sent as one long string, so that the values its
    -- reads return are new strings (creating them allocates: a GC step).
    -- The garbage is made last before B's bytes are sent and A is read:
    -- its finalizers then run (and find B's bytes) while A's read pushes.
    -- (B's chunks hold line ends too, and overlap the whole of A's data)
    local chunk = string.rep(string.char(97 + i % 26), 30) .. "\n"
      .. string.rep(string.char(97 + i % 26), 100 + i % 7)
    sent_b[#sent_b + 1] = chunk
    assert(pa:write(string.format("%04dL%059d\n%060d", i, i, i)))
    for _ = 1, 20 do garbage(mt) end
    assert(pb:write(chunk))
    -- (each read comes before its expected values exist: they would be
    -- allocations, and the same short strings, made before the read)
    reading = true
    local r = pack(a:read(4, "l", 60))   -- A's buffer was empty: scratch
    reading = false
    check("a:read(4, 'l', 60) #" .. i,
      { string.format("%04d", i), string.format("L%059d", i), string.format("%060d", i) }, r)
    chunk = string.rep(string.char(65 + i % 26), 100) .. "\n"
      .. string.rep(string.char(65 + i % 26), 50 + i % 5)
    sent_b[#sent_b + 1] = chunk
    assert(pa:write(string.format("%04dM%058d\nN%059d\n", i, i, i)))
    for _ = 1, 20 do garbage(mt) end
    assert(pb:write(chunk))
    reading = true
    r = pack(a:read("l"))                -- a single read that leaves a rest
    reading = false
    check("a:read('l') #" .. i, { string.format("%04dM%058d", i, i) }, r)
    r = pack(a:read("L"))
    check("a:read('L') #" .. i, { string.format("N%059d\n", i) }, r)
  end
  active = false
  cool_gc()
  collectgarbage()
  -- the rest of B's stream, then the whole of it, in order
  local want, have = table.concat(sent_b), table.concat(got_b)
  if #have < #want then
    b:settimeout(2)
    have = have .. (b:read(#want - #have) or "")
  end
  check("B's stream as the finalizers read it", { want }, pack(have))
  a:close(); pa:close(); b:close(); pb:close()
  return provoked
end
local provoked
if INSIDE then provoked = duplex.run(main) else provoked = main() end
finish(N, provoked)
]]
end

-- A finalizer closes the client whose read is building its results; the
-- buffer is owned memory (a rest kept from the previous read).
local close_during_read = prelude .. [[
local N, provoked = 200, 0
hot_gc()
for i = 1, N do
  local a, pa = pair()
  local target = nil
  local mt = { __gc = function() if target then target:close() end end }
  assert(pa:write(string.format("%060d\n%04d%060d\n%070d", i, i, i, i)))
  check("first line #" .. i, { string.format("%060d", i) }, pack(a:read("l")))
  for _ = 1, 20 do garbage(mt) end
  target = a
  local r = pack(a:read(4, "l", 70))   -- a finalizer closes `a` meanwhile
  target = nil
  if duplex.type(a) == "closed client" then provoked = provoked + 1 end
  check("a:read(4, 'l', 70) #" .. i,
    { string.format("%04d", i), string.format("%060d", i), string.format("%070d", i) }, r)
  a:close(); pa:close()
end
finish(N, provoked)
]]

describe("regression 002: finalizers that run while a read builds its results", function()
  it("finalizers reading another connection: each read returns its own peer's bytes (outside run)", function()
    local out, ok, how, code = run_child(two_streams(false))
    assert.same({ true, "exit", 0 }, { ok, how, code }, out)
    assert.equal("ok 300\n", out)
  end)

  it("finalizers reading another connection: each read returns its own peer's bytes (inside run)", function()
    local out, ok, how, code = run_child(two_streams(true))
    assert.same({ true, "exit", 0 }, { ok, how, code }, out)
    assert.equal("ok 300\n", out)
  end)

  it("a finalizer closing the client being read: no crash, the read returns its values", function()
    local out, ok, how, code = run_child(close_during_read)
    assert.same({ true, "exit", 0 }, { ok, how, code }, out)
    assert.equal("ok 200\n", out)
  end)
end)
