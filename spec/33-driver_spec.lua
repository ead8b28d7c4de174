-- spec/33-driver_spec.lua: rules the operation driver owns, seen from Lua:
-- one deadline per call counted from its start, the turn taken by every
-- read, sleep(0) giving the others a turn, connect given what getsockname
-- returns, and the write cursor over many pieces and empty ones.
local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

local KiB, MiB = 1024, 1024 * 1024

describe("the operation driver", function()
  after_each(helpers.run_cleanups)
  helpers.track_fds()

  it("connect(server:getsockname()) reaches inet, Unix and abstract servers", function()
    local path = helpers.tmpname()
    local targets = { { "127.0.0.1", 0 }, { "unix:" .. path }, { "unix:@duplex-33-" .. os.time() } }
    if helpers.has_ipv6() then targets[#targets + 1] = { "::1", 0 } end
    for _, t in ipairs(targets) do
      local srv = assert(duplex.listen(t[1], t[2]))
      helpers.defer(function() srv:close() end)
      local host, port, family = srv:getsockname()
      local c = assert(duplex.connect(host, port, family))
      helpers.defer(function() c:close() end)
      local p = assert(srv:accept(5))
      helpers.defer(function() p:close() end)
      assert.same({ c }, { c:write("hi\n") })
      assert.same({ "hi" }, { p:read("l") })
    end
  end)

  it("a family that does not match the host gives EAFNOSUPPORT, not another address", function()
    local srv, port = helpers.server()
    helpers.defer(function() srv:close() end)
    local c, msg, code = duplex.connect("127.0.0.1", port, "inet6")
    assert.same({ nil, "EAFNOSUPPORT" }, { c, code })
    assert.matches("^connect 127%.0%.0%.1: ", msg)
  end)

  it("a read's deadline counts from the start of the call, however the bytes trickle #timing", function()
    local c, p = helpers.deferred_pair()
    duplex.run(function()
      local writer = duplex.spawn(function()
        for _ = 1, 12 do
          duplex.sleep(0.05)
          p:write("x")
        end
      end)
      c:settimeout(0.3)
      local t, r, msg, code = helpers.timed(function() return c:read(100) end)
      assert.same({ nil, "ETIMEDOUT" }, { r, code })
      assert.matches("^read 127%.0%.0%.1:%d+: ", msg)
      assert.is_true(t >= 0.29 and t < 1.5, "took " .. t)
      writer:join(5)
      -- nothing was lost: the 12 bytes are all there
      c:settimeout(5)
      assert.same({ string.rep("x", 12) }, { c:read(12) })
    end)
  end)

  it("a write's deadline counts from the start of the call, progress or not #timing", function()
    local c, p = helpers.deferred_pair()
    c:setoption("sndbuf", 16 * KiB)
    duplex.run(function()
      local reader = duplex.spawn(function()
        local got = 0
        for _ = 1, 200 do               -- a slow but steady reader
          duplex.sleep(0.01)
          local s = p:settimeout(0):readsome(8 * KiB)
          if s then got = got + #s end
        end
        return got
      end)
      c:settimeout(0.3)
      local t, r, msg, code, n = helpers.timed(function() return c:write(string.rep("y", 64 * MiB)) end)
      assert.same({ nil, "ETIMEDOUT" }, { r, code })
      assert.matches("^write ", msg)
      assert.is_true(n > 0 and n < 64 * MiB, "wrote " .. n)
      assert.is_true(t >= 0.29 and t < 1.5, "took " .. t)
      reader:cancel()
    end)
  end)

  -- A waiting call keeps the limits it began with: the driver saves only
  -- what it needs while it waits, and must not pick up an idle timeout set
  -- meanwhile (nor, with one, lose it: the second half).
  it("a read waiting in a task keeps the idle timeout it began with, set or not, whatever setoption does meanwhile", function()
    local a, b = helpers.deferred_pair()
    local c = helpers.deferred_pair()
    a:settimeout(nil)                             -- no limit at all: the call saves the least
    duplex.run(function()
      local plain = duplex.spawn(function() return pack(a:readuntil("\n")) end)
      c:setoption("idletimeout", 0.1)
      local idle = duplex.spawn(function() return pack(c:readsome()) end)
      helpers.until_waiting(plain, "read")
      helpers.until_waiting(idle, "read")
      a:setoption("idletimeout", 0.1)             -- after the read began: not this call's
      c:setoption("idletimeout", false)           -- nor does this lift the running one
      assert(b:write("part"))                     -- wakes the read, which waits again
      duplex.sleep(0.3)
      assert(b:write("ial\n"))
      local _, r1 = plain:join(5)
      local _, r2 = idle:join(5)
      assert.same({ n = 1, "partial" }, r1)
      assert.same({ n = 3, nil, r2[2], "ETIMEDOUT" }, r2)
    end)
  end)

  it("sleep(0) in a task lets the other ready tasks run, then returns true", function()
    local order = {}
    duplex.run(function()
      duplex.spawn(function() order[#order + 1] = "other" end)
      order[#order + 1] = "before"
      assert.is_true(duplex.sleep(0))
      order[#order + 1] = "after"
    end)
    assert.same({ "before", "other", "after" }, order)
  end)

  it("a write of many pieces, empty ones among them, arrives in order", function()
    local c, p = helpers.deferred_pair()
    local pieces, want = {}, {}
    for i = 1, 3000 do
      local s = i % 3 == 0 and "" or tostring(i)
      pieces[i] = s
      want[#want + 1] = s
    end
    want = table.concat(want)
    duplex.run(function()
      local reader = duplex.spawn(function() return p:read(#want) end)
      assert.same({ c }, { c:write(unpack(pieces)) })
      assert.same({ true, want }, { reader:join(5) })
    end)
  end)

  it("a multi-format read is cut from one copy: values, then nil at end of stream", function()
    local c, p = helpers.deferred_pair()
    p:write("abc\r\nline two\nrest")
    p:shutdown("w")
    assert.same({ "abc", "line two\n", "re", "st", nil },
      { c:read("l", "L", 2, "a", "l") })
    assert.same({ nil }, { c:read("l") })
  end)

  it("an operation on a closed object gets EBADF; one closed while waiting gets ECANCELED", function()
    local c, p = helpers.deferred_pair()
    duplex.run(function()
      local reader = duplex.spawn(function() return c:read("l") end)
      helpers.until_waiting(reader, "read")
      c:close()
      local ok, r, msg, code = reader:join(5)
      assert.same({ true, nil, "ECANCELED" }, { ok, r, code })
      assert.matches("^read ", msg)
    end)
    assert.same({ nil, "EBADF" }, { c:read("l"), select(3, c:read("l")) })
    assert.same({ nil, "EBADF", 0 }, { c:write("x"), select(3, c:write("x")) })
    p:close()
  end)
end)
