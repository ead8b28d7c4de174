-- spec/06-addresses_spec.lua: every address form duplex accepts, and what
-- getsockname/getpeername/resolve return for it: IPv4, IPv6, host names,
-- the "*" wildcard (dual stack), Unix domain sockets (paths and the abstract
-- namespace), and connect's bind option. Loopback and port 0 only.

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

-- Whether ::1 can be bound, probed without duplex so that an IPv6 bug in
-- duplex fails the specs instead of turning them pending.
local HAS_V6 = helpers.execute(
  [[python3 -c "import socket; socket.socket(socket.AF_INET6).bind(('::1', 0))" 2>/dev/null]]
) == true

local function pid()
  local f = assert(io.open("/proc/self/stat"))
  local n = f:read("*n")
  f:close()
  return n
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  -- a socket file cannot be opened; ask the shell
  return helpers.execute("test -e '" .. path .. "'") == true
end

local function is_socket_file(path)
  return helpers.execute("test -S '" .. path .. "'") == true
end

-- All results of a call, with their count, for assert.same.
local function all(...) return pack(...) end

-- a -> b and b -> a, one line each way.
local function exchange(a, b, tag)
  tag = tag or "ping"
  assert.equal(a, a:write(tag, "\n"))
  assert.equal(tag, b:read("l"))
  assert.equal(b, b:write("re:", tag, "\n"))
  assert.equal("re:" .. tag, a:read("l"))
end

describe("addresses", function()
  helpers.track_fds()

  describe("IPv4", function()
    it("127.0.0.1: getsockname and getpeername on every end", function()
      local own = helpers.scope(); finally(own.close)
      local srv = own(assert(duplex.listen("127.0.0.1", 0)))
      local host, port, family = srv:getsockname()
      assert.equal("127.0.0.1", host)
      assert.equal("integer", helpers.mathtype(port))
      assert.is_true(port > 0 and port < 65536)
      assert.equal("inet", family)

      local c = own(assert(duplex.connect("127.0.0.1", port, { timeout = 5 })))
      local p = own(assert(srv:accept(5)))
      c:settimeout(5)
      p:settimeout(5)

      assert.same(all("127.0.0.1", port, "inet"), all(c:getpeername()))
      local chost, cport, cfamily = c:getsockname()
      assert.equal("127.0.0.1", chost)
      assert.equal("integer", helpers.mathtype(cport))
      assert.is_true(cport > 0 and cport < 65536)
      assert.equal("inet", cfamily)
      assert.same(all(c:getsockname()), all(p:getpeername()))
      assert.same(all("127.0.0.1", port, "inet"), all(p:getsockname()))

      exchange(c, p)
    end)
  end)

  describe("IPv6", function()
    it("::1: getsockname and getpeername on every end", function()
      local own = helpers.scope(); finally(own.close)
      if not HAS_V6 then pending("no IPv6 on this machine") end
      local srv = own(assert(duplex.listen("::1", 0)))
      local host, port, family = srv:getsockname()
      assert.equal("::1", host)
      assert.equal("integer", helpers.mathtype(port))
      assert.equal("inet6", family)

      local c = own(assert(duplex.connect("::1", port, { timeout = 5 })))
      local p = own(assert(srv:accept(5)))
      c:settimeout(5)
      p:settimeout(5)

      assert.same(all("::1", port, "inet6"), all(c:getpeername()))
      local chost, cport, cfamily = c:getsockname()
      assert.equal("::1", chost)
      assert.equal("integer", helpers.mathtype(cport))
      assert.equal("inet6", cfamily)
      assert.same(all(c:getsockname()), all(p:getpeername()))
      assert.same(all("::1", port, "inet6"), all(p:getsockname()))

      exchange(c, p)
    end)

    it("v6only: an IPv6-only server on :: refuses IPv4", function()
      local own = helpers.scope(); finally(own.close)
      if not HAS_V6 then pending("no IPv6 on this machine") end
      local srv = own(assert(duplex.listen("::", 0, { v6only = true })))
      assert.equal(true, srv:getoption("v6only"))
      local _, port = srv:getsockname()
      local c, msg, code = duplex.connect("127.0.0.1", port, { timeout = 2 })
      assert.is_nil(c)
      assert.equal("ECONNREFUSED", code)
      assert.equal("string", type(msg))
      -- over IPv6 it accepts
      local c6 = own(assert(duplex.connect("::1", port, { timeout = 5 })))
      local p6 = own(assert(srv:accept(5)))
      exchange(c6, p6)
    end)
  end)

  describe("host names", function()
    it("'localhost' listens on a loopback address and connects", function()
      local own = helpers.scope(); finally(own.close)
      local srv = own(assert(duplex.listen("localhost", 0)))
      local host, port, family = srv:getsockname()
      if family == "inet" then
        assert.equal("127.0.0.1", host)
      else
        assert.equal("inet6", family)
        assert.equal("::1", host)
      end
      assert.equal("integer", helpers.mathtype(port))

      local c = own(assert(duplex.connect("localhost", port, { timeout = 5 })))
      local p = own(assert(srv:accept(5)))
      c:settimeout(5)
      p:settimeout(5)
      assert.same(all(host, port, family), all(c:getpeername()))
      exchange(c, p)
    end)
  end)

  describe("'*' (every address)", function()
    it("accepts IPv4 connections to 127.0.0.1", function()
      local own = helpers.scope(); finally(own.close)
      local srv = own(assert(duplex.listen("*", 0)))
      local host, port, family = srv:getsockname()
      if HAS_V6 then
        assert.same(all("::", port, "inet6"), all(host, port, family))
      else
        assert.same(all("0.0.0.0", port, "inet"), all(host, port, family))
      end
      assert.equal("integer", helpers.mathtype(port))

      local c = own(assert(duplex.connect("127.0.0.1", port, { timeout = 5 })))
      local p = own(assert(srv:accept(5)))
      c:settimeout(5)
      p:settimeout(5)
      assert.same(all("127.0.0.1", port, "inet"), all(c:getpeername()))
      local _, cport = c:getsockname()
      -- The accepted end of a dual-stack socket may report the IPv4-mapped
      -- form; either is acceptable, but the family must match the host.
      local phost, pport, pfamily = p:getpeername()
      assert.equal(cport, pport)
      if pfamily == "inet" then
        assert.equal("127.0.0.1", phost)
      else
        assert.same(all("::ffff:127.0.0.1", "inet6"), all(phost, pfamily))
      end
      exchange(c, p, "v4")
    end)

    it("accepts both 127.0.0.1 and ::1 on the same server", function()
      local own = helpers.scope(); finally(own.close)
      if not HAS_V6 then pending("no IPv6 on this machine") end
      local srv = own(assert(duplex.listen("*", 0)))
      local _, port = srv:getsockname()

      local c4 = own(assert(duplex.connect("127.0.0.1", port, { timeout = 5 })))
      local p4 = own(assert(srv:accept(5)))
      local c6 = own(assert(duplex.connect("::1", port, { timeout = 5 })))
      local p6 = own(assert(srv:accept(5)))
      for _, s in ipairs({ c4, p4, c6, p6 }) do s:settimeout(5) end

      assert.same(all("127.0.0.1", port, "inet"), all(c4:getpeername()))
      assert.same(all("::1", port, "inet6"), all(c6:getpeername()))
      local _, c6port = c6:getsockname()
      assert.same(all("::1", c6port, "inet6"), all(p6:getpeername()))
      local _, c4port = c4:getsockname()
      local _, p4port = p4:getpeername()
      assert.equal(c4port, p4port)

      -- each accepted end talks to its own client
      exchange(c4, p4, "over-v4")
      exchange(c6, p6, "over-v6")
      exchange(p6, c6, "back-v6")
      exchange(p4, c4, "back-v4")
    end)

    it("'localhost' reaches a server on '*'", function()
      local own = helpers.scope(); finally(own.close)
      local srv = own(assert(duplex.listen("*", 0)))
      local _, port = srv:getsockname()
      local c = own(assert(duplex.connect("localhost", port, { timeout = 5 })))
      local p = own(assert(srv:accept(5)))
      c:settimeout(5)
      p:settimeout(5)
      exchange(c, p)
    end)
  end)

  describe("Unix domain sockets", function()
    it("unix:/path: getsockname returns path, nil, 'unix'", function()
      local own = helpers.scope(); finally(own.close)
      local path = helpers.tmpname()
      own(function() os.remove(path) end)

      local srv = own(assert(duplex.listen("unix:" .. path)))
      assert.same(all(path, nil, "unix"), all(srv:getsockname()))
      assert.is_true(is_socket_file(path))

      local c = own(assert(duplex.connect("unix:" .. path, nil, { timeout = 5 })))
      local p = own(assert(srv:accept(5)))
      c:settimeout(5)
      p:settimeout(5)
      assert.same(all(path, nil, "unix"), all(c:getpeername()))
      assert.same(all(path, nil, "unix"), all(p:getsockname()))
      local _, cport, cfamily = c:getsockname()
      assert.is_nil(cport)
      assert.equal("unix", cfamily)
      exchange(c, p)
      exchange(p, c, "back")

      assert.is_true(srv:close())
      os.remove(path)
      assert.is_false(exists(path))
      -- nothing listens at a removed path
      local c2, msg, code = duplex.connect("unix:" .. path, nil, { timeout = 2 })
      assert.is_nil(c2)
      assert.equal("string", type(msg))
      assert.equal("ENOENT", code)
    end)

    it("unix:@name: the abstract namespace, no file created", function()
      local own = helpers.scope(); finally(own.close)
      local name = ("duplex-spec-%d-%d"):format(pid(), math.random(1, 2 ^ 30))
      local srv = own(assert(duplex.listen("unix:@" .. name)))
      assert.same(all("@" .. name, nil, "unix"), all(srv:getsockname()))
      assert.is_false(exists("@" .. name))
      assert.is_false(exists("/" .. name))

      local c = own(assert(duplex.connect("unix:@" .. name, nil, { timeout = 5 })))
      local p = own(assert(srv:accept(5)))
      c:settimeout(5)
      p:settimeout(5)
      assert.same(all("@" .. name, nil, "unix"), all(c:getpeername()))
      exchange(c, p)

      -- the name disappears with the server
      assert.is_true(srv:close())
      local c2, msg, code = duplex.connect("unix:@" .. name, nil, { timeout = 2 })
      assert.is_nil(c2)
      assert.equal("string", type(msg))
      assert.equal("ECONNREFUSED", code)
    end)
  end)

  describe("connect opts.bind", function()
    it("binds the local host (string form)", function()
      local own = helpers.scope(); finally(own.close)
      local srv, port = own(helpers.server())
      local c = assert(duplex.connect("127.0.0.1", port,
        { timeout = 5, bind = "127.0.0.2" }))
      own(c)
      local p = own(assert(srv:accept(5)))
      local host, cport, family = c:getsockname()
      assert.equal("127.0.0.2", host)
      assert.equal("integer", helpers.mathtype(cport))
      assert.equal("inet", family)
      assert.same(all("127.0.0.2", cport, "inet"), all(p:getpeername()))
      c:settimeout(5)
      p:settimeout(5)
      exchange(c, p)
    end)

    it("binds the local host and port ({host, port} form)", function()
      local own = helpers.scope(); finally(own.close)
      -- a port that was free a moment ago: a listener that never accepted
      -- leaves no TIME_WAIT behind
      local tmp, free = helpers.server()
      tmp:close()
      local srv, port = own(helpers.server())
      local c = assert(duplex.connect("127.0.0.1", port,
        { timeout = 5, bind = { "127.0.0.1", free } }))
      own(c)
      local p = own(assert(srv:accept(5)))
      assert.same(all("127.0.0.1", free, "inet"), all(c:getsockname()))
      assert.same(all("127.0.0.1", free, "inet"), all(p:getpeername()))
      c:settimeout(5)
      p:settimeout(5)
      exchange(c, p)
    end)
  end)

  describe("duplex.resolve", function()
    it("resolves 'localhost' to an array of {host, port, family}", function()
      local r, msg, code = duplex.resolve("localhost", 80)
      assert.equal("table", type(r))
      assert.is_nil(msg)
      assert.is_nil(code)
      assert.is_true(#r >= 1)
      local seen, v4 = {}, false
      for i = 1, #r do
        local a = r[i]
        assert.equal("table", type(a))
        assert.equal("integer", helpers.mathtype(a.port))
        assert.equal(80, a.port)
        if a.family == "inet" then
          assert.equal("127.0.0.1", a.host)
          v4 = true
        else
          assert.equal("inet6", a.family)
          assert.equal("::1", a.host)
        end
        -- one entry per address: stream sockets only, no SOCK_DGRAM/RAW copies
        local key = a.family .. " " .. a.host
        assert.is_nil(seen[key], "duplicate entry " .. key)
        seen[key] = true
      end
      assert.is_true(v4, "127.0.0.1 among the results")
    end)

    it("returns numeric addresses as they are", function()
      assert.same({ { host = "127.0.0.1", port = 80, family = "inet" } },
        (duplex.resolve("127.0.0.1", 80)))
      assert.same({ { host = "::1", port = 443, family = "inet6" } },
        (duplex.resolve("::1", 443)))
    end)

    it("fails on an unknown name with nil, message, 'EAI_*'", function()
      local r, msg, code = duplex.resolve("no-such-host.invalid", 80)
      assert.is_nil(r)
      assert.equal("string", type(msg))
      assert.is_true(#msg > 0)
      assert.equal("string", type(code))
      assert.matches("^EAI_%u+$", code)
    end)

    it("connect reports resolver failures with the EAI_* code too", function()
      local c, msg, code = duplex.connect("no-such-host.invalid", 80, { timeout = 5 })
      assert.is_nil(c)
      assert.equal("string", type(msg))
      assert.matches("^EAI_%u+$", code)
    end)
  end)
end)
