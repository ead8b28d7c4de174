-- spec/08-lifetime_spec.lua: the life of a duplex object: close is
-- idempotent, <close> and the garbage collector close what they own, a
-- closed object raises when used, and every descriptor is non-blocking and
-- close-on-exec from birth (checked in /proc/self/fdinfo and across exec).

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack, band = helpers.pack, helpers.unpack, helpers.band

local O_NONBLOCK = 0x800      -- 04000
local O_CLOEXEC = 0x80000     -- 02000000

-- The "flags:" field of /proc/self/fdinfo/N (octal), or nil if N is not open.
local function fdflags(fd)
  local f = io.open("/proc/self/fdinfo/" .. fd)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  local oct = assert(s:match("flags:%s*(%d+)"), s)
  return tonumber(oct, 8)
end

local function is_open(fd)
  return fdflags(fd) ~= nil
end

-- Every kind of descriptor duplex creates, open and connected:
-- { name = object } for TCP and Unix servers, clients and accepted clients.
local function all_kinds()
  local path = helpers.tmpname()
  local tcp, port = helpers.server()
  local tcp_client = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
  local tcp_accepted = assert(tcp:accept(5))
  local unix = assert(duplex.listen("unix:" .. path))
  local unix_client = assert(duplex.connect("unix:" .. path, nil, { timeout = 5 }))
  local unix_accepted = assert(unix:accept(5))
  local objs = {
    ["TCP server"] = tcp, ["TCP client"] = tcp_client, ["TCP accepted client"] = tcp_accepted,
    ["Unix server"] = unix, ["Unix client"] = unix_client, ["Unix accepted client"] = unix_accepted,
  }
  local function close()
    for _, o in pairs(objs) do o:close() end
    os.remove(path)
  end
  return objs, close
end

describe("lifetime", function()
  helpers.track_fds()

  describe("close", function()
    it("is idempotent and returns true, for servers and clients", function()
      local c, p, srv = helpers.pair()
      for _, o in ipairs({ c, p, srv }) do
        assert.same(pack(true), pack(o:close()))
        assert.same(pack(true), pack(o:close()))
        assert.same(pack(true), pack(o:close()))
      end
    end)

    it("releases the descriptor", function()
      local c, p, srv = helpers.pair()
      local fds = { c:fileno(), p:fileno(), srv:fileno() }
      c:close(); p:close(); srv:close()
      for _, fd in ipairs(fds) do assert.is_false(is_open(fd), "fd " .. fd) end
    end)

    it("tostring of closed objects", function()
      local c, p, srv = helpers.pair()
      c:close(); p:close(); srv:close()
      assert.equal("duplex.client (closed)", tostring(c))
      assert.equal("duplex.client (closed)", tostring(p))
      assert.equal("duplex.server (closed)", tostring(srv))
    end)
  end)

  describe("duplex.type", function()
    it("before and after close", function()
      local c, p, srv = helpers.pair()
      assert.equal("server", duplex.type(srv))
      assert.equal("client", duplex.type(c))
      assert.equal("client", duplex.type(p))
      c:close(); p:close(); srv:close()
      assert.equal("closed server", duplex.type(srv))
      assert.equal("closed client", duplex.type(c))
      assert.equal("closed client", duplex.type(p))
    end)

    it("is nil for anything else", function()
      for _, v in ipairs({ 42, "client", {}, io.stdout, print, true, coroutine.create(function() end) }) do
        assert.same(pack(nil), pack(duplex.type(v)))
      end
      assert.same(pack(nil), pack(duplex.type(nil)))
      local fake = setmetatable({}, { __name = "duplex.client" })
      assert.is_nil(duplex.type(fake))
    end)
  end)

  -- Lua 5.4 only: these bodies are compiled from text there (helpers.load54)
  -- and the specs are pending elsewhere.
  describe("<close> variables", function()
    local block_ends = helpers.load54([[
      local duplex, helpers = ...
      local sref, cref, pref
      do
        local srv <close>, port = helpers.server()
        local c <close> = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
        local p <close> = assert(srv:accept(5))
        sref, cref, pref = srv, c, p
        assert.equal("server", duplex.type(srv))
        assert.equal("client", duplex.type(c))
      end
      assert.equal("closed server", duplex.type(sref))
      assert.equal("closed client", duplex.type(cref))
      assert.equal("closed client", duplex.type(pref))
    ]], "block_ends")
    it("close servers and clients when the block ends", function()
      if not block_ends then pending("Lua 5.4 only: <close>") end
      block_ends(duplex, helpers)
    end)

    local block_raises = helpers.load54([[
      local duplex, helpers = ...
      local sref, cref
      local ok, err = pcall(function()
        local srv <close>, port = helpers.server()
        local c <close> = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
        sref, cref = srv, c
        error("boom", 0)
      end)
      assert.same({ false, "boom" }, { ok, err })
      assert.equal("closed server", duplex.type(sref))
      assert.equal("closed client", duplex.type(cref))
    ]], "block_raises")
    it("close them when the block raises", function()
      if not block_raises then pending("Lua 5.4 only: <close>") end
      block_raises(duplex, helpers)
    end)

    local closed_before = helpers.load54([[
      local duplex, helpers = ...
      local ref
      do
        local c <close>, p, srv = helpers.pair()
        local _ <close> = p
        local _ <close> = srv
        assert.is_true(c:close())
        ref = c
      end
      assert.equal("closed client", duplex.type(ref))
    ]], "closed_before")
    it("an explicit close before the block ends is fine", function()
      if not closed_before then pending("Lua 5.4 only: <close>") end
      closed_before(duplex, helpers)
    end)
  end)

  describe("garbage collection", function()
    -- Objects are made in a function that returns: a dead local of the
    -- running function can stay on the Lua stack and keep its value alive.
    it("closes unreachable open servers and clients", function()
      local base = helpers.fdcount()
      local function make()
        local keep = {}
        for _ = 1, 20 do
          local srv, port = helpers.server()
          local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
          local p = assert(srv:accept(5))
          keep[#keep + 1] = { srv, c, p }
        end
        assert.equal(base + 60, helpers.fdcount())
      end
      make()
      collectgarbage()
      collectgarbage()
      assert.equal(base, helpers.fdcount())
    end)

    it("closes unreachable Unix sockets", function()
      local own = helpers.scope(); finally(own.close)
      local base = helpers.fdcount()
      local paths = {}
      own(function() for _, p in ipairs(paths) do os.remove(p) end end)
      local function make()
        local keep = {}
        for i = 1, 5 do
          paths[i] = helpers.tmpname()
          local srv = assert(duplex.listen("unix:" .. paths[i]))
          local c = assert(duplex.connect("unix:" .. paths[i], nil, { timeout = 5 }))
          local p = assert(srv:accept(5))
          keep[i] = { srv, c, p }
        end
        assert.equal(base + 15, helpers.fdcount())
      end
      make()
      collectgarbage()
      collectgarbage()
      assert.equal(base, helpers.fdcount())
    end)

    it("never closes a descriptor twice (a reused number stays open)", function()
      local own = helpers.scope(); finally(own.close)
      local srv, port = own(helpers.server())
      local c1 = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
      local p1 = assert(srv:accept(5))
      local fd = c1:fileno()
      c1:close()
      -- the kernel hands out the lowest free number: c2 reuses c1's
      local c2 = own(assert(duplex.connect("127.0.0.1", port, { timeout = 5 })))
      local p2 = own(assert(srv:accept(5)))
      assert.equal(fd, c2:fileno())
      c1 = nil   -- unreachable now (may linger on the stack: then nothing is tested)
      collectgarbage()
      collectgarbage()
      assert.is_true(is_open(fd))
      c2:settimeout(5)
      p2:settimeout(5)
      assert.equal(c2, c2:write("still open\n"))
      assert.equal("still open", p2:read("l"))
      p1:close()
    end)

    it("a peer sees EOF when its unreachable partner is collected", function()
      local own = helpers.scope(); finally(own.close)
      local srv, port = own(helpers.server())
      local function make()
        local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
        local p = assert(srv:accept(5))
        c:write("last words")
        return p
      end
      local p = own(make())
      collectgarbage()
      collectgarbage()
      p:settimeout(5)
      assert.equal("last words", p:read("a"))
    end)
  end)

  describe("descriptor flags", function()
    it("every descriptor is close-on-exec and non-blocking (/proc/self/fdinfo)", function()
      local own = helpers.scope(); finally(own.close)
      local objs, close = all_kinds()
      own(close)
      for name, o in pairs(objs) do
        local fd = o:fileno()
        local flags = assert(fdflags(fd), name .. ": fd not open")
        assert.is_true(band(flags, O_CLOEXEC) ~= 0,
          ("%s (fd %d): O_CLOEXEC not set, flags %o"):format(name, fd, flags))
        assert.is_true(band(flags, O_NONBLOCK) ~= 0,
          ("%s (fd %d): O_NONBLOCK not set, flags %o"):format(name, fd, flags))
      end
    end)

    it("IPv6 descriptors too", function()
      local own = helpers.scope(); finally(own.close)
      local v6 = helpers.execute(
        [[python3 -c "import socket; socket.socket(socket.AF_INET6).bind(('::1', 0))" 2>/dev/null]])
      if v6 ~= true then pending("no IPv6 on this machine") end
      local srv = own(assert(duplex.listen("::1", 0)))
      local _, port = srv:getsockname()
      local c = own(assert(duplex.connect("::1", port, { timeout = 5 })))
      local p = own(assert(srv:accept(5)))
      for _, o in ipairs({ srv, c, p }) do
        local flags = assert(fdflags(o:fileno()))
        assert.is_true(band(flags, O_CLOEXEC) ~= 0, ("flags %o"):format(flags))
        assert.is_true(band(flags, O_NONBLOCK) ~= 0, ("flags %o"):format(flags))
      end
    end)

    it("no descriptor survives exec into a child process", function()
      local own = helpers.scope(); finally(own.close)
      local objs, close = all_kinds()
      own(close)
      local fds = {}
      for _, o in pairs(objs) do fds[#fds + 1] = o:fileno() end
      -- the child lists what it inherited: "N socket:[...]" lines
      local cmd = "sh -c 'for f in " .. table.concat(fds, " ")
        .. "; do echo \"$f $(readlink /proc/$$/fd/$f 2>/dev/null)\"; done'"
      local pipe = assert(io.popen(cmd))
      local out = "\n" .. pipe:read("*a")
      pipe:close()
      for _, fd in ipairs(fds) do
        local link = assert(out:match("\n" .. fd .. " ([^\n]*)"), out)
        assert.is_nil(link:match("^socket:"), ("fd %d leaked into the child: %s"):format(fd, link))
      end
    end)
  end)

  -- A socket another task closed is the normal case in concurrent code:
  -- every method that uses its descriptor returns nil, msg, "EBADF"
  -- (write and forward add their count, 0), never raises.
  describe("a closed object", function()
    local client_methods = {
      { "read", "l" }, { "read", 1 }, { "read", 0 }, { "read", "l", "a" }, { "readuntil", "\n" },
      { "readsome" }, { "write", "x", 4 }, { "shutdown", "w" }, { "getpeername" },
      { "getsockname" }, { "setoption", "nodelay", true }, { "setoption", "maxline", 10 },
      { "getoption", "nodelay" }, { "getoption", "idletimeout" }, { "fileno" },
      { "handshake" }, { "forward", "open" },
    }
    if duplex.tls then
      client_methods[#client_methods + 1] = { "tlsinfo" }
      client_methods[#client_methods + 1] = { "starttls", { verify = false } }
    end
    local server_methods = {
      { "accept", 0 }, { "accept" }, { "getsockname" }, { "setoption", "rcvbuf", 65536 },
      { "getoption", "rcvbuf" }, { "getoption", "handshake_timeout" }, { "fileno" },
      { "serve", function() end },
    }

    for _, m in ipairs(client_methods) do
      it("client:" .. m[1] .. "() returns nil, msg, 'EBADF'", function()
        local c, p, srv = helpers.pair()
        local _, port = srv:getsockname()
        local x, y = helpers.pair()
        finally(function() helpers.close(x, y) end)
        c:close(); p:close(); srv:close()
        local args = pack(unpack(m, 2))
        if args[1] == "open" then args[1] = x end      -- forward to an open client
        local op = m[1] == "handshake" and "tls handshake" or m[1]
        local want = { nil, ("%s 127.0.0.1:%d: socket is closed"):format(op, port), "EBADF", n = 3 }
        if m[1] == "write" or m[1] == "forward" then want[4], want.n = 0, 4 end
        assert.same(want, pack(c[m[1]](c, unpack(args, 1, args.n))))
      end)
    end

    it("client:forward(dst) to a closed dst returns nil, msg, 'EBADF', 0", function()
      local a, b, s2 = helpers.pair()
      finally(function() helpers.close(a, b, s2) end)
      local c, p, srv = helpers.pair()
      local _, port = srv:getsockname()
      helpers.close(c, p, srv)
      assert.same({ nil, ("forward 127.0.0.1:%d: socket is closed"):format(port), "EBADF", 0, n = 4 },
        pack(b:forward(c)))
      assert.equal(a, a:write("still open\n"))
      assert.equal("still open", b:read("l"))
    end)

    it("client:lines() iterates to a failure that carries the code", function()
      local c, p, srv = helpers.pair()
      local _, port = srv:getsockname()
      helpers.close(c, p, srv)
      local ok, e = pcall(c:lines())
      assert.is_false(ok)
      assert.same({ msg = ("read 127.0.0.1:%d: socket is closed"):format(port), code = "EBADF" },
        { msg = e.msg, code = e.code, partial = e.partial })
      assert.equal(e.msg, tostring(e))
    end)

    it("client:settimeout() and close() still work", function()
      local c, p, srv = helpers.pair()
      helpers.close(c, p, srv)
      assert.equal(c, c:settimeout(1))
      assert.same({ true, n = 1 }, pack(c:close()))
    end)

    for _, m in ipairs(server_methods) do
      it("server:" .. m[1] .. "() returns nil, msg, 'EBADF'", function()
        local srv, port = helpers.server()
        srv:close()
        local fn = srv[m[1]]
        assert.equal("function", type(fn))
        assert.same({ nil, ("%s 127.0.0.1:%d: socket is closed"):format(m[1], port), "EBADF", n = 3 },
          pack(fn(srv, unpack(m, 2))))
      end)
    end
  end)

  describe("fileno", function()
    it("returns the descriptor of open objects", function()
      local own = helpers.scope(); finally(own.close)
      local objs, close = all_kinds()
      own(close)
      local seen = {}
      for name, o in pairs(objs) do
        local fd = o:fileno()
        assert.equal("integer", helpers.mathtype(fd), name)
        assert.is_true(fd > 2, name)
        assert.is_nil(seen[fd], "two objects share fd " .. fd)
        seen[fd] = true
        assert.is_true(is_open(fd), name)
      end
    end)
  end)
end)
