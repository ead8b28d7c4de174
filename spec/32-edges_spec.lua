-- Failure paths that the other files do not reach: Unix paths too long or
-- empty, a run whose tasks all wait for each other, option bounds.
local duplex = require "duplex"
local helpers = require "spec.helpers"

describe("edge failures", function()
  helpers.track_fds()

  it("a Unix path longer than sun_path: nil, msg, ENAMETOOLONG", function()
    local long = "unix:/tmp/" .. string.rep("x", 200)
    local s, msg, code = duplex.listen(long)
    assert.same({ nil, "ENAMETOOLONG" }, { s, code })
    assert.matches("^listen ", msg)
    local c, cmsg, ccode = duplex.connect(long)
    assert.same({ nil, "ENAMETOOLONG" }, { c, ccode })
    assert.matches("^connect ", cmsg)
  end)

  it('"*" on a port whose IPv6 side is taken fails, instead of listening on IPv4 alone', function()
    if not helpers.has_ipv6() then pending("no IPv6 on this machine") end
    local v6 = assert(duplex.listen("::", 0, { v6only = true, reuseaddr = false }))
    finally(function() v6:close() end)
    local _, port = v6:getsockname()
    local s, msg, code = duplex.listen("*", port, { reuseaddr = false })
    if s then s:close() end
    assert.same({ nil, "EADDRINUSE" }, { s, code })
    assert.matches("^listen %[::%]:" .. port .. ": ", msg)
  end)

  it("an empty Unix path is an argument error", function()
    assert.has_error(function() duplex.listen("unix:") end,
      "bad argument #1 to 'listen' (empty unix socket path)")
    assert.has_error(function() duplex.connect("unix:") end,
      "bad argument #1 to 'connect' (empty unix socket path)")
  end)

  it("run raises when every task waits for another, and ends them all", function()
    local closed = {}
    local ok, err = pcall(duplex.run, function()
      local b, c
      b = duplex.spawn(function()
        return helpers.with_close(function() closed.b = true end, function()   -- (<close>: 5.4)
          duplex.sleep(0.01)
          return c:join()
        end)
      end)
      c = duplex.spawn(function()
        return helpers.with_close(function() closed.c = true end, function()
          return b:join()
        end)
      end)
      return b:join()
    end)
    assert.is_false(ok)
    assert.matches("duplex.run: deadlock: every task waits for another task", err, 1, true)
    assert.same(helpers.lua54 and { b = true, c = true } or {}, closed)
    -- the scheduler is usable again afterwards
    assert.same({ 42 }, { duplex.run(function() return 42 end) })
  end)

  it("option values out of range raise, naming the value", function()
    local c, p, srv = helpers.pair()
    finally(function() helpers.close(c, p, srv) end)
    assert.has_error(function() c:setoption("maxline", 0) end,
      "bad argument #2 to 'setoption' (maxline must be positive)")
    assert.has_error(function() c:setoption("rcvbuf", -1) end,
      "bad argument #2 to 'setoption' (size out of range)")
    assert.has_error(function() c:setoption("linger", -1) end,
      "bad argument #2 to 'setoption' (linger out of range)")
    assert.has_error(function() srv:setoption("v6only", true) end,
      "bad argument #1 to 'setoption' (option 'v6only' is read-only)")
  end)
end)
