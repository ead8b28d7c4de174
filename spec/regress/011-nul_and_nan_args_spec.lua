-- Symptom: strings with an embedded zero byte were silently cut at it:
-- duplex.connect("127.0.0.1\0evil.example", port) connected to 127.0.0.1,
-- listen("unix:/tmp/x\0y") listened on /tmp/x, c:read("l\0x") read a line,
-- c:setoption("nodelay\0x", true) set nodelay. task:join(0/0) was accepted
-- (and read as "do not wait"), and byte counts such as read(1e300) were cast
-- to an integer before the range check (undefined behaviour, which UBSan
-- reports as a float-cast overflow).
-- Cause: hosts, Unix paths, formats and option names went through C string
-- functions (strcmp, strlen, getaddrinfo) after luaL_checkstring, which
-- ignores the length; join compared `timeout < 0`, which NaN passes; byte
-- counts were converted with a C cast before any check.
-- Fix: a zero byte in a host, path, format or option name is an argument
-- error ("zero byte"/"invalid format"/"unknown option"); every byte count
-- and timeout is checked as a number first (NaN and out-of-range values
-- raise "bad argument"); math.huge stays a valid timeout ("forever").
local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

-- (The calls below are not tail calls: on 5.1 and LuaJIT a tail call keeps
-- no trace of its caller, so an argument error could not name the method nor
-- count its arguments from self.)

-- Call fn; close whatever socket it returned (the old code made real ones)
-- and return the error it raised, or nil plus a description of what it
-- returned instead.
local function raised(fn)
  local r = pack(pcall(fn))
  if r[1] then
    local what = {}
    for i = 2, r.n do
      local v = r[i]
      if duplex.type(v) then v:close() end
      what[#what + 1] = tostring(v)
    end
    return nil, "returned: " .. table.concat(what, ", ")
  end
  return tostring(r[2])
end

-- Assert fn raises an error containing every plain string of `wants`.
local function raises_with(fn, wants)
  local err, returned = raised(fn)
  assert(err, "did not raise; " .. tostring(returned))
  for _, want in ipairs(wants) do
    assert(err:find(want, 1, true), string.format("error %q lacks %q", err, want))
  end
  return err
end

describe("regression 011: zero bytes, NaN and huge numbers in arguments", function()
  after_each(helpers.run_cleanups)
  helpers.track_fds()

  describe("a host with a zero byte", function()
    it("is an argument error of connect (not a connection to the prefix)", function()
      local srv, port = helpers.server()
      helpers.defer(function() srv:close() end)
      raises_with(function() local r = duplex.connect("127.0.0.1\0evil.example", port, { timeout = 5 }); return r end,
        { "bad argument #1 to 'connect'", "zero byte" })
      -- nothing connected: the server has no pending connection
      local a, _, code = srv:accept(0)
      if a then a:close() end
      assert.same({ nil, "EAGAIN" }, { a, code })
    end)

    it("is an argument error of listen", function()
      raises_with(function() local r = duplex.listen("127.0.0.1\0evil.example", 0); return r end,
        { "bad argument #1 to 'listen'", "zero byte" })
    end)

    it("is an argument error of resolve", function()
      raises_with(function() local r = duplex.resolve("127.0.0.1\0evil.example"); return r end,
        { "bad argument #1 to 'resolve'", "zero byte" })
      raises_with(function() local r = duplex.resolve("localhost\0evil.example", 80); return r end,
        { "bad argument #1 to 'resolve'", "zero byte" })
    end)
  end)

  describe("a Unix socket address with a zero byte", function()
    it("is an argument error of listen and connect (path)", function()
      local path = helpers.tmpname()
      helpers.defer(function() os.remove(path) end)
      raises_with(function() local r = duplex.listen("unix:" .. path .. "\0y"); return r end,
        { "bad argument #1", "zero byte" })
      assert.is_nil(io.open(path), "listen created the truncated path")
      raises_with(function() local r = duplex.connect("unix:" .. path .. "\0y"); return r end,
        { "bad argument #1", "zero byte" })
    end)

    it("is an argument error of listen and connect (abstract name)", function()
      local name = "unix:@duplex-r011-" .. tostring({}):match("0x(%x+)")
      raises_with(function() local r = duplex.listen(name .. "\0c"); return r end,
        { "bad argument #1", "zero byte" })
      -- the prefix alone is free: nothing listens on it
      local srv = assert(duplex.listen(name))
      srv:close()
      raises_with(function() local r = duplex.connect(name .. "\0c"); return r end,
        { "bad argument #1", "zero byte" })
    end)
  end)

  describe("a format or option name with a zero byte", function()
    it("is an invalid read format", function()
      local c, p = helpers.deferred_pair()
      c:settimeout(0)                      -- the old code would wait for a line
      p:write("line\n")
      raises_with(function() local r = c:read("l\0x"); return r end, { "bad argument #1 to 'read'", "invalid format" })
      raises_with(function() local r = c:read("*a\0"); return r end, { "bad argument #1 to 'read'", "invalid format" })
      raises_with(function() local r = c:read(1, "L\0"); return r end, { "bad argument #2 to 'read'", "invalid format" })
      c:settimeout(5)
      assert.equal("line", c:read("l"))     -- nothing was consumed
    end)

    it("is an unknown option name", function()
      local c = helpers.deferred_pair()
      local srv = helpers.server()
      helpers.defer(function() srv:close() end)
      for _, call in ipairs {
        function() local r = c:setoption("nodelay\0x", true); return r end,
        function() local r = c:getoption("nodelay\0x"); return r end,
        function() local r = srv:setoption("reuseaddr\0x", true); return r end,
      } do
        local err = raises_with(call, { "bad argument #1 to '" })
        assert(err:find("unknown option", 1, true) or err:find("zero byte", 1, true), err)
      end
    end)
  end)

  describe("a byte count that is not a representable integer", function()
    for _, v in ipairs { 0 / 0, math.huge, -math.huge, 1e300 } do
      it("raises for " .. tostring(v), function()
        local c = helpers.deferred_pair()
        c:settimeout(0)
        raises_with(function() local r = c:read(v); return r end, { "bad argument #1 to 'read'" })
        raises_with(function() local r = c:read("l", v); return r end, { "bad argument #2 to 'read'" })
        raises_with(function() local r = c:readsome(v); return r end, { "bad argument #1 to 'readsome'" })
        raises_with(function() local r = c:readuntil("\n", v); return r end, { "bad argument #2 to 'readuntil'" })
      end)
    end
  end)

  describe("a NaN timeout", function()
    local nan = 0 / 0
    it("raises in settimeout and accept", function()
      local c = helpers.deferred_pair()
      local srv = helpers.server()
      helpers.defer(function() srv:close() end)
      raises_with(function() local r = c:settimeout(nan); return r end, { "bad argument #1 to 'settimeout'" })
      raises_with(function() local r = srv:settimeout(nan); return r end, { "bad argument #1 to 'settimeout'" })
      raises_with(function() local r = srv:accept(nan); return r end, { "bad argument #1 to 'accept'" })
    end)

    it("raises in connect's timeout option and in sleep", function()
      local srv, port = helpers.server()
      helpers.defer(function() srv:close() end)
      raises_with(function() local r = duplex.connect("127.0.0.1", port, { timeout = nan }); return r end,
        { "bad argument #3 to 'connect'" })
      raises_with(function() local r = duplex.sleep(nan); return r end, { "bad argument #1 to 'sleep'" })
      duplex.run(function()
        raises_with(function() local r = duplex.sleep(nan); return r end, { "bad argument #1 to 'sleep'" })
      end)
    end)

    it("raises in task:join, numbered like join's other argument errors", function()
      duplex.run(function()
        local t = duplex.spawn(function() duplex.sleep(0.05); return "done" end)
        -- join's own convention for its timeout argument (#2 in the old code)
        local neg = raises_with(function() return t:join(-1) end, { "bad argument #" })
        local argno = assert(neg:match("bad argument #%d+ to 'join'"), neg)
        raises_with(function() return t:join(nan) end, { argno })
        assert.same({ true, "done" }, { t:join(5) })
        -- and on a finished task too
        raises_with(function() return t:join(nan) end, { argno })
      end)
    end)
  end)

  describe("math.huge as a timeout", function()
    it("still means forever", function()
      local c, p = helpers.deferred_pair()
      local srv, port = helpers.server()
      helpers.defer(function() srv:close() end)
      assert.equal(c, c:settimeout(math.huge))
      assert.equal(srv, srv:settimeout(math.huge))
      p:write("x\n")
      assert.equal("x", c:read("l"))
      local c2 = assert(duplex.connect("127.0.0.1", port, { timeout = math.huge }))
      helpers.defer(function() c2:close() end)
      local p2 = assert(srv:accept(math.huge))
      helpers.defer(function() p2:close() end)
      assert.equal("client", duplex.type(p2))
      duplex.run(function()
        local sleeper = duplex.spawn(function() local r = duplex.sleep(math.huge); return r end)
        local quick = duplex.spawn(function() duplex.sleep(0.01); return "quick" end)
        assert.same({ true, "quick" }, { quick:join(math.huge) })
        assert.same({ nil, "join: timed out", "ETIMEDOUT" }, { sleeper:join(0.05) })
        assert.is_true(sleeper:cancel())
        assert.same({ false, "canceled" }, { sleeper:join(math.huge) })
      end)
    end)
  end)
end)
