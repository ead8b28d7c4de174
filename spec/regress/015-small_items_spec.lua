-- Three small defects, one `it` each.
--
-- 1. Loading duplex.core twice in one Lua state
-- Symptom: after `package.loaded["duplex.core"] = nil; package.loaded
-- ["duplex"] = nil; require "duplex"`, the first instance's sockets stopped
-- cooperating with the first instance's duplex.run: a read inside a task
-- blocked the whole process until its timeout instead of yielding, so the
-- task that would have written the data never ran in time (ETIMEDOUT).
-- Cause: luaopen_duplex_core registered its metatables under fixed names in
-- the registry (luaL_newmetatable returns the existing table) and refilled
-- them with functions bound to the second instance's state, so every
-- object of the first instance then consulted a state whose scheduler was
-- not running.
-- Fix: each loaded instance has metatables and methods of its own (bound
-- to its own state); both instances keep working.
--
-- 2. read("l") / readuntil on a slow drip
-- Symptom: a line (or a readuntil delimiter) arriving a few bytes per
-- receive cost CPU time quadratic in its length.
-- Cause: after every receive, try_read / try_until searched the whole
-- buffer again from its start.
-- Fix: the search resumes where the previous one stopped (less the
-- delimiter's length minus one), so the cost is linear.
-- The specs compare CPU time (os.clock) per byte of one large drip with
-- that of 8 drips an eighth of its size: about 1 when linear (measured
-- 0.9-1.1 with a resuming search); on the old code 6.7-7.3 for readuntil
-- and 2.9-3.5 for read("l") (memchr is fast, so the quadratic part of
-- read("l") only shows at a megabyte). The bound is 2.
--
-- 3. The Makefile
-- Symptom: editing csrc/dx_loop_epoll.c or csrc/dx_loop_poll.c and running
-- `make` did not rebuild build/duplex/core.so.
-- Cause: the backends are #included by dx_loop.c and filtered out of SRCS,
-- and HDRS lists only *.h, so they were no prerequisite of the library.
-- Fix: the backend files are prerequisites of build/duplex/core.so.
local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

-- 1 -------------------------------------------------------------------------

-- Runs in a child process: the second load rebinds process-wide metatables
-- in the old code, which would break the rest of a busted run.
local twice_script = [[
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local d1 = require "duplex"

local function pair(d)
  local srv = assert(d.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local c = assert(d.connect("127.0.0.1", port, { timeout = 5 }))
  local p = assert(srv:accept(5))
  c:settimeout(1)
  p:settimeout(1)
  return c, p, srv
end

-- Inside d.run: one task waits for a line on p, another (which runs after
-- it, in spawn order) sends it on c. Returns what the reader got, as one
-- printable string.
local function exchange(d, c, p)
  return d.run(function()
    local reader = d.spawn(function() return p:read("l") end)
    local writer = d.spawn(function() return c:write("ping\n") == c end)
    local r = pack(reader:join(5))
    local w = pack(writer:join(5))
    local parts = {}
    for i = 2, r.n do parts[#parts + 1] = tostring(r[i]) end
    return tostring(r[1]) .. " " .. table.concat(parts, " ") .. " / writer " .. tostring(w[2])
  end)
end

local c1, p1, s1 = pair(d1)              -- made by the first instance
package.loaded["duplex.core"] = nil
package.loaded["duplex"] = nil
local d2 = require "duplex"
assert(d2 ~= d1, "the second require returned the first module")
print("first instance, pair made before the second load: " .. exchange(d1, c1, p1))
local c1b, p1b, s1b = pair(d1)
print("first instance, pair made after the second load: " .. exchange(d1, c1b, p1b))
local c2, p2, s2 = pair(d2)
print("second instance: " .. exchange(d2, c2, p2))
for _, o in ipairs { c1, p1, s1, c1b, p1b, s1b, c2, p2, s2 } do o:close() end
print("end")
]]

-- 2 -------------------------------------------------------------------------

-- Inside duplex.run over a Unix socket (no Nagle delays): a task sends
-- `size` filler bytes, then `tail`, in pieces of 1..maxpiece bytes with a
-- scheduler turn after each, so the reader receives about one piece per
-- wake-up. Returns the CPU seconds of the read call (os.clock: this process
-- only; the writer task runs meanwhile, at a cost linear in `size`).
local function drip(size, maxpiece, filler, tail, read)
  local cpu, got
  duplex.run(function()
    local name = string.format("unix:@duplex-r015-%s-%d",
      tostring({}):match("0x(%x+)"), size)
    local srv = assert(duplex.listen(name))
    local c = assert(duplex.connect(name, nil, { timeout = 5 }))
    local p = assert(srv:accept(5))
    c:settimeout(10)
    p:settimeout(10)
    p:setoption("maxline", 4 * size)
    local body = string.rep(filler, size) .. tail
    local writer = duplex.spawn(function()
      local i, k = 1, 0
      while i <= #body do
        k = k + 1
        local n = k % maxpiece + 1
        assert(c:write(body:sub(i, i + n - 1)))
        i = i + n
        duplex.sleep(0)
      end
    end)
    local t0 = os.clock()
    got = pack(read(p))
    cpu = os.clock() - t0
    assert(writer:join(10))
    helpers.close(c, p, srv)
  end)
  return cpu, got
end

-- CPU per byte of one large drip over CPU per byte of `times` small drips
-- of 1/times the size (the same bytes in all): about 1 when the cost is
-- linear, about `times` (here 8) when it is quadratic.
local function cost_ratio(small, times, maxpiece, filler, tail, read, check)
  local small_cpu = 0
  for _ = 1, times do
    local cpu, got = drip(small, maxpiece, filler, tail, read)
    check(got, small)
    small_cpu = small_cpu + cpu
  end
  local large_cpu, got = drip(small * times, maxpiece, filler, tail, read)
  check(got, small * times)
  return large_cpu / math.max(small_cpu, 1e-6), large_cpu, small_cpu
end

-- 3 -------------------------------------------------------------------------

local function sh(cmd)
  local ok, how, code = helpers.execute(cmd)
  return ok and 0 or (how == "exit" and code or 128 + code)
end

describe("regression 015:", function()
  it("a second load of duplex.core leaves the first instance working", function()
    local out, ok, how, code = helpers.readall("timeout -k 2 30 " .. helpers.lua .. " -e "
      .. helpers.shquote(twice_script) .. " 2>&1")
    assert.same({ true, "exit", 0 }, { ok, how, code }, out)
    assert.equal(table.concat({
      "first instance, pair made before the second load: true ping / writer true",
      "first instance, pair made after the second load: true ping / writer true",
      "second instance: true ping / writer true",
      "end",
      "",
    }, "\n"), out)
  end)

  it("readuntil on a slow drip costs CPU linear in the bytes #timing", function()
    -- "\r" everywhere and the delimiter "\r\n": the worst case for a
    -- search that restarts, since every byte starts a candidate match.
    local ratio, large, small = cost_ratio(4096, 8, 16, "\r", "\r\n",
      function(p) return p:readuntil("\r\n") end,
      function(got, size)
        assert.equal(1, got.n)
        assert.is_true(got[1] == string.rep("\r", size), "readuntil returned other bytes")
      end)
    assert.is_true(ratio < 2, string.format(
      "CPU per byte of a 32 KiB drip / of 4 KiB drips = %.2f (%.3f s / %.3f s)",
      ratio, large, small))
  end)

  it("read(\"l\") on a slow drip costs CPU linear in the bytes #timing", function()
    local ratio, large, small = cost_ratio(131072, 8, 32, "x", "\n",
      function(p) return p:read("l") end,
      function(got, size)
        assert.equal(1, got.n)
        assert.is_true(got[1] == string.rep("x", size), "read returned other bytes")
      end)
    assert.is_true(ratio < 2, string.format(
      "CPU per byte of a 1 MiB drip / of 128 KiB drips = %.2f (%.3f s / %.3f s)",
      ratio, large, small))
  end)

  it("make rebuilds the library when a poller backend changes", function()
    -- A copy of the Makefile and csrc/: the checkout itself is not touched.
    local dir = os.tmpname()
    os.remove(dir)
    assert.equal(0, sh("mkdir " .. helpers.shquote(dir)))
    finally(function() helpers.execute("rm -rf " .. helpers.shquote(dir)) end)
    local q = helpers.shquote(dir)
    assert.equal(0, sh("cp -R Makefile csrc " .. q))
    -- (the build of the Lua under test: build/duplex for 5.4, else build/<interpreter>/duplex)
    local lib = (helpers.lua54 and "build" or "build/" .. helpers.interpreter) .. "/duplex/core.so"
    local args = " -C " .. q .. " LUA=" .. helpers.interpreter .. " " .. lib .. " >/dev/null 2>&1"
    local make, check = "make -s" .. args, "make -q" .. args
    for _, backend in ipairs { "csrc/dx_loop_epoll.c", "csrc/dx_loop_poll.c" } do
      assert.equal(0, sh(make), "the copy does not build")
      assert.equal(0, sh(check), "not up to date right after a build")
      assert.equal(0, sh("touch " .. helpers.shquote(dir .. "/" .. backend)))
      assert.equal(1, sh(check), "make does not rebuild after " .. backend .. " changed")
    end
  end)
end)
