-- spec/50-udp_spec.lua: duplex.udp datagram sockets (issue 9): bound and
-- unbound sockets of every family, sendto/recvfrom and connect/send/recv
-- round trips, datagrams larger than the caller's max (EMSGSIZE, never cut
-- silently, and the next datagram intact), ICMP port-unreachable as
-- ECONNREFUSED (naming the peer), timeouts, several tasks waiting on one
-- socket, options, multicast on loopback, unbound sockets that reach IPv4
-- and IPv6 alike (dual-stack), and the object's life (type, tostring,
-- close, gc).
-- Loopback and port 0 only; every wait is bounded by a timeout.

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

local defer, run_cleanups = helpers.defer, helpers.run_cleanups
local HAS_V6 = helpers.has_ipv6()
local HAS_PY = helpers.execute("command -v python3 >/dev/null 2>&1") == true

-- A socket closed when the test ends (by run_cleanups, before the fd check).
local function udp(...)
  local u, msg, code = duplex.udp(...)
  assert(u, tostring(msg) .. " " .. tostring(code))
  defer(function() u:close() end)
  return u
end

-- A socket bound on 127.0.0.1 with a 5 s timeout: returns it and its port.
local function bound4()
  local u = udp("127.0.0.1", 0)
  u:settimeout(5)
  local _, port = u:getsockname()
  return u, port
end

local function all_bytes()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return table.concat(t)
end

-- One call's failure as {count, nil, code}, and its message:
-- assert.same({ 3, nil, "EAGAIN" }, fail(u:recvfrom())).
local function fail(...)
  local r = pack(...)
  return { r.n, r[1], r[3] }, r[2]
end

local function is_socket(path)
  return helpers.execute("test -S " .. helpers.shquote(path)) == true
end

-- No name is looked up inside a task here: that would start the lookup
-- pool in busted's own process (spec/51 does it in child processes).

describe("duplex.udp", function()
  after_each(run_cleanups)
  helpers.track_fds()

  describe("making sockets", function()
    it("unbound, both families (dual-stack IPv6) by default: type, tostring, getsockname", function()
      local u = udp()
      assert.equal("udp", duplex.type(u))
      assert.equal("duplex.udp (unbound)", tostring(u))
      local _, _, family = u:getsockname()
      if HAS_V6 then assert.equal("inet6", family) end
      if family == "inet6" then
        assert.same({ "::", 0, "inet6" }, { u:getsockname() })
      else                                 -- no IPv6 here: IPv4
        assert.same({ "0.0.0.0", 0, "inet" }, { u:getsockname() })
      end
      assert.equal("integer", helpers.mathtype(u:fileno()))
      assert.is_true(u:fileno() > 2)
    end)

    it("unbound IPv6 and Unix with the family option", function()
      local x = udp(nil, nil, { family = "unix" })
      assert.equal("duplex.udp (unbound)", tostring(x))
      assert.same({ "", nil, "unix" }, { x:getsockname() })
      if not HAS_V6 then pending("no IPv6 on this machine") end
      local u = udp(nil, nil, { family = "inet6" })
      assert.equal("duplex.udp (unbound)", tostring(u))
      assert.same({ "::", 0, "inet6" }, { u:getsockname() })
    end)

    it("bound to 127.0.0.1 port 0: the kernel's port in getsockname and tostring", function()
      local u, port = bound4()
      assert.equal("integer", helpers.mathtype(port))
      assert.is_true(port > 0 and port < 65536)
      assert.same({ "127.0.0.1", port, "inet" }, { u:getsockname() })
      assert.equal("duplex.udp (127.0.0.1:" .. port .. ")", tostring(u))
    end)

    it("bound to ::1", function()
      if not HAS_V6 then pending("no IPv6 on this machine") end
      local u = udp("::1", 0)
      local _, port = u:getsockname()
      assert.same({ "::1", port, "inet6" }, { u:getsockname() })
      assert.equal("duplex.udp ([::1]:" .. port .. ")", tostring(u))
      local c = udp(nil, nil, { family = "inet6" })
      u:settimeout(5)
      assert.equal(c, c:sendto("six", "::1", port))
      local data, host, from = u:recvfrom()
      assert.same({ "six", "::1" }, { data, host })
      assert.same({ "::", from, "inet6" }, { c:getsockname() })   -- bound by the send
    end)

    it('"*": every address; an IPv4 sender is seen (and answered) on it', function()
      local u = udp("*", 0)
      u:settimeout(5)
      local host, port, family = u:getsockname()
      local c = udp()
      c:settimeout(5)
      assert.equal(c, c:sendto("to any", "127.0.0.1", port))
      local data, from, fport = u:recvfrom()
      local _, cport = c:getsockname()
      if family == "inet6" then          -- dual-stack: never ::ffff:127.0.0.1
        assert.same({ "::", "inet6" }, { host, family })
      else
        assert.same({ "0.0.0.0", "inet" }, { host, family })
      end
      assert.same({ "to any", "127.0.0.1", cport }, { data, from, fport })
      assert.equal(u, u:sendto("back", from, fport))
      assert.same({ "back", "127.0.0.1", port }, { c:recvfrom() })
    end)

    it("a Unix path: bound, named senders and unnamed ones, the file removed on close", function()
      local path = helpers.tmpname()
      local spath = helpers.tmpname()
      defer(function() os.remove(path); os.remove(spath) end)
      local u = assert(duplex.udp("unix:" .. path))
      u:settimeout(5)
      assert.same({ path, nil, "unix" }, { u:getsockname() })
      assert.equal("duplex.udp (" .. path .. ")", tostring(u))
      assert.is_true(is_socket(path))
      local named = udp("unix:" .. spath)
      local unnamed = udp(nil, nil, { family = "unix" })
      assert.equal(named, named:sendto("from a path", "unix:" .. path))
      assert.same({ "from a path", spath, nil }, { u:recvfrom() })
      assert.equal(unnamed, unnamed:sendto("\0anon\255", "unix:" .. path))
      local r = pack(u:recvfrom())
      assert.same({ n = 3, "\0anon\255", "", nil }, r)
      -- reply to the named one
      named:settimeout(5)
      assert.equal(u, u:sendto("reply", "unix:" .. spath))
      assert.same({ "reply", path, nil }, { named:recvfrom() })
      assert.is_true(u:close())
      local f, _, errno = io.open(path)
      assert.same({ nil, 2 }, { f, errno })
      named:close()
      assert.is_false(is_socket(spath))
    end)

    it("a Unix path is removed by __gc too", function()
      local path = helpers.tmpname()
      defer(function() os.remove(path) end)
      do
        local u = assert(duplex.udp("unix:" .. path))
        assert.same({ path, nil, "unix" }, { u:getsockname() })
      end
      collectgarbage()
      collectgarbage()
      assert.is_nil(io.open(path))
    end)

    it("a Unix abstract name (unix:@name)", function()
      local name = "@duplex-udp-spec-" .. tostring({}):match("0x(%x+)") .. "-" .. os.time()
      local u = udp("unix:" .. name)
      u:settimeout(5)
      assert.same({ name, nil, "unix" }, { u:getsockname() })
      assert.equal("duplex.udp (" .. name .. ")", tostring(u))
      local c = udp(nil, nil, { family = "unix" })
      assert.equal(c, c:sendto("abstract", "unix:" .. name))
      assert.same({ "abstract", "", nil }, { u:recvfrom() })
    end)

    it("reuseaddr and reuseport options", function()
      local a = udp("127.0.0.1", 0, { reuseaddr = true, reuseport = true })
      local _, port = a:getsockname()
      assert.is_true(a:getoption("reuseaddr"))
      assert.is_true(a:getoption("reuseport"))
      local b = udp("127.0.0.1", port, { reuseaddr = true, reuseport = true })
      assert.same({ "127.0.0.1", port, "inet" }, { b:getsockname() })
    end)

    it("a port in use: nil, msg, EADDRINUSE", function()
      local _, port = bound4()
      local u, msg, code = duplex.udp("127.0.0.1", port)
      assert.same({ nil, "EADDRINUSE" }, { u, code })
      assert.equal("udp 127.0.0.1:" .. port .. ": Address already in use", msg)
    end)

    it("a name that cannot be looked up: nil, msg, EAI_NONAME", function()
      -- (an empty label: refused by getaddrinfo itself, no DNS query is sent)
      local u, msg, code = duplex.udp("bad..name", 0)
      assert.same({ nil, "udp bad..name: Name or service not known", "EAI_NONAME" }, { u, msg, code })
    end)

    it("a Unix path in a missing directory: nil, msg, ENOENT", function()
      local u, msg, code = duplex.udp("unix:/nonexistent-duplex-dir/x.sock")
      assert.same({ nil, "udp unix:/nonexistent-duplex-dir/x.sock: No such file or directory", "ENOENT" },
        { u, msg, code })
    end)

    it("argument errors raise", function()
      local function err(...)
        local ok, e = pcall(duplex.udp, ...)
        assert.is_false(ok)
        return e
      end
      assert.matches("bad argument #3 to '[%w%.]*udp' %(option 'family' must be \"inet\", \"inet6\" or \"unix\"%)",
        err(nil, nil, { family = "ipx" }))
      assert.matches("bad argument #3 to '[%w%.]*udp' %(option 'family' must be a string%)",
        err(nil, nil, { family = 4 }))
      assert.matches("bad argument #2 to '[%w%.]*udp' %(port expected%)", err("127.0.0.1"))
      assert.matches("bad argument #2 to '[%w%.]*udp' %(port expected%)", err("127.0.0.1", nil, {}))
      assert.matches("bad argument #2 to '[%w%.]*udp' %(port out of range%)", err("127.0.0.1", 65536))
      assert.matches("bad argument #2 to '[%w%.]*udp' %(port out of range%)", err("127.0.0.1", -1))
      assert.matches("bad argument #2 to '[%w%.]*udp'", err("127.0.0.1", "x"))
      assert.matches("bad argument #1 to '[%w%.]*udp' %(string expected, got table%)", err({}, 1))
      assert.matches("bad argument #1 to '[%w%.]*udp' %(host contains a zero byte%)", err("127.0.0.1\0x", 0))
      assert.matches("bad argument #3 to '[%w%.]*udp' %(unknown option 'bogus'%)", err("127.0.0.1", 0, { bogus = 1 }))
      assert.matches("bad argument #3 to '[%w%.]*udp' %(table expected, got number%)", err("127.0.0.1", 0, 5))
      assert.matches("bad argument #1 to '[%w%.]*udp' %(empty unix socket path%)", err("unix:"))
    end)
  end)

  describe("sendto and recvfrom", function()
    it("round trips text, every byte value and an empty datagram, with the sender's address", function()
      local u, port = bound4()
      local c = udp("127.0.0.1", 0)
      c:settimeout(5)
      local _, cport = c:getsockname()
      local bin = all_bytes():rep(4)
      assert.equal(c, c:sendto("hello", "127.0.0.1", port))
      assert.equal(c, c:sendto(bin, "127.0.0.1", port))
      assert.equal(c, c:sendto("", "127.0.0.1", port))
      assert.equal(c, c:sendto("last", "127.0.0.1", port))
      assert.same({ n = 3, "hello", "127.0.0.1", cport }, pack(u:recvfrom()))
      assert.same({ n = 3, bin, "127.0.0.1", cport }, pack(u:recvfrom()))
      assert.same({ n = 3, "", "127.0.0.1", cport }, pack(u:recvfrom()))
      assert.same({ n = 3, "last", "127.0.0.1", cport }, pack(u:recvfrom()))
      assert.equal(u, u:sendto("answer", "127.0.0.1", cport))
      assert.same({ "answer", "127.0.0.1", port }, { c:recvfrom() })
    end)

    it("recvfrom(max) with a bigger datagram: nil, msg, EMSGSIZE, and the next datagram is intact", function()
      local u, port = bound4()
      local c = udp()
      assert.equal(c, c:sendto("0123456789", "127.0.0.1", port))
      assert.equal(c, c:sendto("abcd", "127.0.0.1", port))
      local r = pack(u:recvfrom(4))
      local _, cport = c:getsockname()
      assert.same({ n = 5, nil, "recvfrom 127.0.0.1:" .. port .. ": Message too long", "EMSGSIZE",
                    "127.0.0.1", cport }, r)
      assert.same({ "abcd", "127.0.0.1", cport }, { u:recvfrom(4) })
      -- exactly max fits
      assert.equal(c, c:sendto("12345", "127.0.0.1", port))
      assert.same({ "12345", "127.0.0.1", cport }, { u:recvfrom(5) })
      -- the big one was consumed: nothing is left
      u:settimeout(0)
      assert.same({ 3, nil, "EAGAIN" }, fail(u:recvfrom()))
    end)

    it("EMSGSIZE comes with the sender (nil, msg, code, host, port): the server answers the oversized query", function()
      local srv, port = bound4()
      local c = udp("127.0.0.1", 0)
      c:settimeout(5)
      local _, cport = c:getsockname()
      assert.equal(c, c:sendto(("q"):rep(600), "127.0.0.1", port))
      local r = pack(srv:recvfrom(512))
      assert.same({ n = 5, nil, "recvfrom 127.0.0.1:" .. port .. ": Message too long", "EMSGSIZE",
                    "127.0.0.1", cport }, r)
      assert.equal(srv, srv:sendto("too big", r[4], r[5]))
      assert.same({ "too big", "127.0.0.1", port }, { c:recvfrom() })
      -- other failures add nothing
      srv:settimeout(0)
      assert.same({ n = 3, nil, "recvfrom 127.0.0.1:" .. port .. ": Resource temporarily unavailable", "EAGAIN" },
        pack(srv:recvfrom(512)))
    end)

    it("EMSGSIZE with the sender on a dual-stack server (an IPv4 and an IPv6 sender) and from a Unix path", function()
      local path, spath = helpers.tmpname(), helpers.tmpname()
      defer(function() os.remove(path); os.remove(spath) end)
      local x = udp("unix:" .. path)
      local y = udp("unix:" .. spath)
      x:settimeout(5)
      y:settimeout(5)
      assert.equal(y, y:sendto("a long question", "unix:" .. path))
      local r = pack(x:recvfrom(4))
      assert.same({ n = 5, nil, "recvfrom " .. path .. ": Message too long", "EMSGSIZE", spath, nil }, r)
      assert.equal(x, x:sendto("too big", "unix:" .. r[4]))
      assert.same({ "too big", path, nil }, { y:recvfrom() })

      local srv = udp("*", 0)
      srv:settimeout(5)
      local _, port, family = srv:getsockname()
      local function ask(host)
        local c = udp()
        c:settimeout(5)
        assert.equal(c, c:sendto("0123456789", host, port))
        local _, cport = c:getsockname()
        local label = family == "inet6" and "[::]:" .. port or "0.0.0.0:" .. port
        local res = pack(srv:recvfrom(9))
        assert.same({ n = 5, nil, "recvfrom " .. label .. ": Message too long", "EMSGSIZE", host, cport }, res)
        assert.equal(srv, srv:sendto("too big", res[4], res[5]))
        assert.same({ "too big", host, port }, { c:recvfrom() })
      end
      ask("127.0.0.1")
      if not HAS_V6 then pending("no IPv6 on this machine") end
      ask("::1")
    end)

    it("recvfrom() without max returns a 60000-byte datagram whole; a max above 64 KiB works", function()
      local u, port = bound4()
      local c = udp()
      local _, cport
      local big = ("0123456789abcdef"):rep(3750) -- 60000
      assert.equal(c, c:sendto(big, "127.0.0.1", port))
      _, cport = c:getsockname()
      local data, host, p = u:recvfrom()
      assert.equal(60000, #data)
      assert.is_true(data == big, "the datagram came back changed")
      assert.same({ "127.0.0.1", cport }, { host, p })
      assert.equal(c, c:sendto(big, "127.0.0.1", port))
      data = u:recvfrom(100000)
      assert.is_true(data == big, "the datagram came back changed (max 100000)")
      assert.equal(c, c:sendto(big, "127.0.0.1", port))
      assert.same({ 5, nil, "EMSGSIZE" }, fail(u:recvfrom(59999)))
      assert.equal(c, c:sendto("small", "127.0.0.1", port))
      assert.same({ "small", "127.0.0.1", cport }, { u:recvfrom(59999) })
    end)

    it("Unix datagrams above 64 KiB: recvfrom() says EMSGSIZE, recvfrom(max) takes them whole", function()
      local path = helpers.tmpname()
      defer(function() os.remove(path) end)
      local x = udp("unix:" .. path)
      x:settimeout(5)
      local y = udp(nil, nil, { family = "unix" })
      assert.equal(y, y:setoption("sndbuf", 400000))
      assert.equal(x, x:setoption("rcvbuf", 400000))
      local big = ("0123456789"):rep(10000)
      assert.equal(y, y:sendto(big, "unix:" .. path))
      assert.same({ n = 5, nil, "recvfrom " .. path .. ": Message too long", "EMSGSIZE", "", nil },
        pack(x:recvfrom()))
      assert.equal(y, y:sendto(big, "unix:" .. path))
      local d, from, port = x:recvfrom(100000)
      assert.is_true(d == big, "the datagram came back changed")
      assert.same({ "", nil }, { from, port })
      local exact = ("q"):rep(65536)
      assert.equal(y, y:sendto(exact, "unix:" .. path))
      d = x:recvfrom()
      assert.is_true(d == exact, "a 65536-byte datagram did not come back whole")
    end)

    it("sendto of 70000 bytes: nil, msg, EMSGSIZE", function()
      local _, port = bound4()
      local c = udp()
      local r = pack(c:sendto(("x"):rep(70000), "127.0.0.1", port))
      assert.same({ n = 3, nil, "sendto 127.0.0.1:" .. port .. ": Message too long", "EMSGSIZE" }, r)
    end)

    it("sendto an address of the other family: nil, msg, EAFNOSUPPORT", function()
      local c = udp(nil, nil, { family = "inet" })
      local r = pack(c:sendto("x", "::1", 9))
      assert.same({ n = 3, nil, "sendto ::1: Address family not supported by protocol", "EAFNOSUPPORT" }, r)
      if HAS_V6 then                       -- "inet6" is IPv6 only
        local c6 = udp(nil, nil, { family = "inet6" })
        r = pack(c6:sendto("x", "127.0.0.1", 9))
        assert.same({ n = 3, nil, "sendto 127.0.0.1: Address family not supported by protocol", "EAFNOSUPPORT" }, r)
      end
      local x = udp(nil, nil, { family = "unix" })
      r = pack(x:sendto("x", "127.0.0.1", 9))
      assert.same({ n = 3, nil, "sendto 127.0.0.1: Address family not supported by protocol", "EAFNOSUPPORT" }, r)
    end)

    it("method argument errors raise", function()
      local u = udp()
      local function err(f, ...)
        local ok, e = pcall(f, u, ...)
        assert.is_false(ok)
        return e
      end
      assert.matches("bad argument #4 .*number expected, got nil", err(u.sendto, "x", "127.0.0.1"))
      assert.matches("bad argument #3 .*string expected, got nil", err(u.sendto, "x"))
      assert.matches("bad argument #2 .*string expected, got table", err(u.sendto, {}, "127.0.0.1", 9))
      assert.matches("bad argument #2 .*maximum must be positive", err(u.recvfrom, 0))
      assert.matches("bad argument #2 .*maximum must be positive", err(u.recv, -1))
      assert.matches("bad argument #2 .*number expected, got string", err(u.recvfrom, "x"))
      assert.matches("bad argument #3 .*number expected, got nil", err(u.connect, "127.0.0.1"))
    end)
  end)

  describe("connect, send and recv", function()
    it("send and recv with the default peer; getpeername; other senders are filtered", function()
      local u, port = bound4()
      local c = udp()
      c:settimeout(5)
      assert.same({ 3, nil, "ENOTCONN" }, fail(c:getpeername()))
      assert.equal(c, c:connect("127.0.0.1", port))
      assert.same({ "127.0.0.1", port, "inet" }, { c:getpeername() })
      assert.equal(c, c:send("one"))
      assert.equal(c, c:send(""))
      local _, cport = c:getsockname()
      assert.same({ "one", "127.0.0.1", cport }, { u:recvfrom() })
      assert.same({ "", "127.0.0.1", cport }, { u:recvfrom() })
      -- a third socket's datagram never reaches the connected one
      local other = udp()
      assert.equal(other, other:sendto("stranger", "127.0.0.1", cport))
      assert.equal(u, u:sendto("peer", "127.0.0.1", cport))
      assert.same({ n = 1, "peer" }, pack(c:recv()))
      -- recv(max) too small
      assert.equal(u, u:sendto("too long", "127.0.0.1", cport))
      assert.equal(u, u:sendto("ok", "127.0.0.1", cport))
      -- (recv names the peer, and only recvfrom adds the sender)
      assert.same({ n = 3, nil, "recv 127.0.0.1:" .. port .. ": Message too long", "EMSGSIZE" },
        pack(c:recv(3)))
      assert.same({ n = 1, "ok" }, pack(c:recv(3)))
    end)

    it("tostring names the address the kernel bound at connect or the first sendto", function()
      local u, port = bound4()
      local c = udp()
      assert.equal("duplex.udp (unbound)", tostring(c))
      assert.equal(c, c:connect("127.0.0.1", port))
      local _, cport = c:getsockname()
      assert.is_true(cport > 0)
      assert.equal("duplex.udp (127.0.0.1:" .. cport .. ")", tostring(c))
      local s = udp()
      assert.equal(s, s:sendto("x", "127.0.0.1", port))
      local shost, sport = s:getsockname()
      if shost == "::" then              -- dual-stack: bound to every address of both
        assert.equal("duplex.udp ([::]:" .. sport .. ")", tostring(s))
      else
        assert.equal("duplex.udp (0.0.0.0:" .. sport .. ")", tostring(s))
      end
      assert.same({ "x", "127.0.0.1", sport }, { u:recvfrom() })
    end)

    it("send on an unconnected socket: nil, msg, EDESTADDRREQ", function()
      local c = udp()
      assert.same({ nil, "send: Destination address required", "EDESTADDRREQ" }, { c:send("x") })
    end)

    it("ICMP port unreachable surfaces as ECONNREFUSED on a later recv or send, naming the peer", function()
      local gone = udp("127.0.0.1", 0)
      local _, port = gone:getsockname()
      gone:close()
      local c = udp()
      c:settimeout(2)
      assert.equal(c, c:connect("127.0.0.1", port))
      assert.equal(c, c:send("anyone?"))
      assert.same({ n = 3, nil, "recv 127.0.0.1:" .. port .. ": Connection refused", "ECONNREFUSED" },
        pack(c:recv()))
      -- the error is reported once; the next send goes, the one after fails
      assert.equal(c, c:send("again"))
      local deadline, r = duplex.now() + 2, nil
      repeat
        duplex.sleep(0.01)
        r = pack(c:send("again"))
      until r[1] == nil or duplex.now() > deadline
      assert.same({ n = 3, nil, "send 127.0.0.1:" .. port .. ": Connection refused", "ECONNREFUSED" }, r)
    end)

    it("ECONNREFUSED names the peer on IPv4-only, IPv6 and bound sockets too", function()
      local function refused(c, host)
        local gone = udp(host, 0)
        local _, port = gone:getsockname()
        gone:close()
        c:settimeout(2)
        assert.equal(c, c:connect(host, port))
        assert.equal(c, c:send("anyone?"))
        local where = host:find(":", 1, true) and "[" .. host .. "]:" .. port or host .. ":" .. port
        assert.same({ n = 3, nil, "recv " .. where .. ": Connection refused", "ECONNREFUSED" },
          pack(c:recv()))
      end
      refused(udp(nil, nil, { family = "inet" }), "127.0.0.1")
      refused(udp("127.0.0.1", 0), "127.0.0.1")
      if HAS_V6 then
        refused(udp(), "::1")
        refused(udp(nil, nil, { family = "inet6" }), "::1")
      end
    end)

    it("ICMP refused inside a task too", function()
      local gone = udp("127.0.0.1", 0)
      local _, port = gone:getsockname()
      gone:close()
      local c = udp()
      c:settimeout(2)
      local r = pack(duplex.run(function()
        assert.equal(c, c:connect("127.0.0.1", port))
        assert.equal(c, c:send("anyone?"))
        return c:recv()
      end))
      assert.same({ n = 3, nil, "recv 127.0.0.1:" .. port .. ": Connection refused", "ECONNREFUSED" }, r)
    end)
  end)

  describe("unbound sockets reach IPv4 and IPv6 alike (dual-stack)", function()
    local function probe(host)
      if not HAS_PY then pending("python3 is needed for spec/shim/ttl_probe.py") end
      local proc = helpers.spawn_process(("timeout -k 2 20 python3 spec/shim/ttl_probe.py %s 1"):format(host))
      defer(function() proc:close() end)
      local port = helpers.tointeger(tonumber((proc:read("l") or ""):match("^listening (%d+)$")))
      assert.is_not_nil(port, "the probe did not start")
      return proc, port
    end

    it("sendto 127.0.0.1 and ::1 from one socket: each peer sees it, it sees each as a plain address", function()
      local s4, p4 = bound4()
      local u = udp()
      u:settimeout(5)
      assert.equal(u, u:sendto("to four", "127.0.0.1", p4))
      local _, uport = u:getsockname()
      assert.same({ "to four", "127.0.0.1", uport }, { s4:recvfrom() })
      assert.equal(s4, s4:sendto("from four", "127.0.0.1", uport))
      assert.same({ n = 3, "from four", "127.0.0.1", p4 }, pack(u:recvfrom()))
      if not HAS_V6 then pending("no IPv6 on this machine: IPv4 only") end
      assert.same({ "::", uport, "inet6" }, { u:getsockname() })
      assert.equal("duplex.udp ([::]:" .. uport .. ")", tostring(u))
      local s6 = udp("::1", 0)
      s6:settimeout(5)
      local _, p6 = s6:getsockname()
      assert.equal(u, u:sendto("to six", "::1", p6))
      assert.same({ "to six", "::1", uport }, { s6:recvfrom() })
      assert.equal(s6, s6:sendto("from six", "::1", uport))
      assert.same({ n = 3, "from six", "::1", p6 }, pack(u:recvfrom()))
      -- and IPv4 again, after IPv6
      assert.equal(u, u:sendto("four again", "127.0.0.1", p4))
      assert.same({ "four again", "127.0.0.1", uport }, { s4:recvfrom() })
    end)

    it("connect, send and recv to either family; getpeername and getsockname say which", function()
      local s4, p4 = bound4()
      local c = udp()
      c:settimeout(5)
      assert.equal(c, c:connect("127.0.0.1", p4))
      local _, cport = c:getsockname()
      assert.same({ "127.0.0.1", p4, "inet" }, { c:getpeername() })
      assert.same({ "127.0.0.1", cport, "inet" }, { c:getsockname() })
      assert.equal("duplex.udp (127.0.0.1:" .. cport .. ")", tostring(c))
      assert.equal(c, c:send("ping4"))
      assert.same({ "ping4", "127.0.0.1", cport }, { s4:recvfrom() })
      assert.equal(s4, s4:sendto("pong4", "127.0.0.1", cport))
      assert.same({ n = 1, "pong4" }, pack(c:recv()))
      if not HAS_V6 then pending("no IPv6 on this machine: IPv4 only") end
      local s6 = udp("::1", 0)
      s6:settimeout(5)
      local _, p6 = s6:getsockname()
      -- the same socket, now to an IPv6 peer
      assert.equal(c, c:connect("::1", p6))
      local _, c6port = c:getsockname()
      assert.same({ "::1", p6, "inet6" }, { c:getpeername() })
      assert.same({ "::1", c6port, "inet6" }, { c:getsockname() })
      assert.equal(c, c:send("ping6"))
      assert.same({ "ping6", "::1", c6port }, { s6:recvfrom() })
      assert.equal(s6, s6:sendto("pong6", "::1", c6port))
      assert.same({ n = 1, "pong6" }, pack(c:recv()))
      -- and back to IPv4
      assert.equal(c, c:connect("127.0.0.1", p4))
      assert.same({ "127.0.0.1", p4, "inet" }, { c:getpeername() })
      assert.equal(c, c:send("again4"))
      local d, h = s4:recvfrom()
      assert.same({ "again4", "127.0.0.1" }, { d, h })
      -- a socket that starts with IPv6
      local c2 = udp()
      assert.equal(c2, c2:connect("::1", p6))
      assert.same({ "::1", p6, "inet6" }, { c2:getpeername() })
    end)

    it("ttl, multicast_ttl, multicast_loop and broadcast round trip; the ttl is the one IPv4 and IPv6 packets carry", function()
      local u = udp()
      assert.equal(u, u:setoption("ttl", 9))
      assert.equal(9, u:getoption("ttl"))
      assert.equal(u, u:setoption("multicast_ttl", 0))
      assert.equal(0, u:getoption("multicast_ttl"))
      assert.equal(u, u:setoption("multicast_loop", false))
      assert.is_false(u:getoption("multicast_loop"))
      assert.equal(u, u:setoption("multicast_loop", true))
      assert.is_true(u:getoption("multicast_loop"))
      assert.equal(u, u:setoption("broadcast", true))
      assert.is_true(u:getoption("broadcast"))
      local p, port = probe("127.0.0.1")
      assert.equal(u, u:sendto("four", "127.0.0.1", port))
      assert.equal("four 9", p:read("l"))
      assert.same({ true, "exit", 0 }, { p:wait(5) })
      if not HAS_V6 then pending("no IPv6 on this machine: IPv4 only") end
      p, port = probe("::1")
      assert.equal(u, u:sendto("six", "::1", port))
      assert.equal("six 9", p:read("l"))
      assert.same({ true, "exit", 0 }, { p:wait(5) })
    end)

    it('a dual-stack socket joins IPv4 groups on "lo" and hears an IPv4 sender as a plain address', function()
      local m = udp("*", 0, { reuseaddr = true })
      local _, port, family = m:getsockname()
      if family ~= "inet6" then pending('no IPv6 on this machine: "*" is IPv4 only') end
      for _, group in ipairs({ "239.255.0.1", "224.0.0.250" }) do
        local ok, msg, code = m:setoption("join", group, "lo")
        if not ok then
          pending(("the kernel refused to join %s on lo: %s %s"):format(group, tostring(msg), tostring(code)))
        end
        assert.equal(m, ok)
        local s = udp("127.0.0.1", 0)      -- bound to 127.0.0.1: the group goes out of lo
        local _, sport = s:getsockname()
        assert.equal(s, s:setoption("multicast_loop", true))
        assert.equal(s, s:setoption("multicast_ttl", 1))
        assert.equal(s, s:sendto("to " .. group, group, port))
        m:settimeout(1)
        local r = { m:recvfrom() }
        if r[1] == nil and r[3] == "ETIMEDOUT" then
          pending("multicast to " .. group .. " is not looped back on lo here")
        end
        assert.same({ "to " .. group, "127.0.0.1", sport }, r)
        assert.equal(m, m:setoption("leave", group, "lo"))
        assert.same({ nil, "leave " .. group .. ": Cannot assign requested address", "EADDRNOTAVAIL" },
          { m:setoption("leave", group, "lo") })
        s:close()
      end
    end)
  end)

  describe("timeouts", function()
    it("settimeout(0.1): recvfrom gives ETIMEDOUT after about 0.1 s; settimeout(0): EAGAIN at once", function()
      local u, port = bound4()
      u:settimeout(0.1)
      local dt, d, msg, code = helpers.timed(function() return u:recvfrom() end)
      assert.same({ nil, "recvfrom 127.0.0.1:" .. port .. ": Connection timed out", "ETIMEDOUT" }, { d, msg, code })
      assert.is_true(dt >= 0.09 and dt < 2, "took " .. dt)
      u:settimeout(0)
      dt, d, msg, code = helpers.timed(function() return u:recvfrom() end)
      assert.same({ nil, "recvfrom 127.0.0.1:" .. port .. ": Resource temporarily unavailable", "EAGAIN" },
        { d, msg, code })
      assert.is_true(dt < 0.5, "took " .. dt)
      local c = udp()
      c:connect("127.0.0.1", port)
      c:settimeout(0.05)
      assert.same({ nil, "recv 127.0.0.1:" .. port .. ": Connection timed out", "ETIMEDOUT" }, { c:recv() })
    end)

    it("inside a task: ETIMEDOUT while the other tasks run", function()
      local u, port = bound4()
      u:settimeout(0.1)
      local ticks = 0
      local r = pack(duplex.run(function()
        local ticker = duplex.spawn(function()
          for _ = 1, 500 do ticks = ticks + 1; duplex.sleep(0.005) end
        end)
        local res = pack(u:recvfrom())
        ticker:cancel()
        return unpack(res, 1, res.n)
      end))
      assert.same({ n = 3, nil, "recvfrom 127.0.0.1:" .. port .. ": Connection timed out", "ETIMEDOUT" }, r)
      assert.is_true(ticks >= 2, "the ticker ran " .. ticks .. " times")
    end)
  end)

  describe("inside duplex.run", function()
    it("several tasks waiting in recvfrom on one socket each get one datagram, in FIFO order, while a ticker runs", function()
      local u, port = bound4()
      local c = udp("127.0.0.1", 0)
      local _, cport = c:getsockname()
      local got, ticks = {}, 0
      duplex.run(function()
        local waiters = {}
        for i = 1, 4 do
          waiters[i] = duplex.spawn(function()
            local d, h, p = u:recvfrom()
            got[#got + 1] = { i, d, h, p }
            return d
          end)
        end
        local ticker = duplex.spawn(function()
          for _ = 1, 1000 do ticks = ticks + 1; duplex.sleep(0.002) end
        end)
        -- the ticker goes on while all four wait
        local deadline = duplex.now() + 5
        while ticks < 10 and duplex.now() < deadline do duplex.sleep(0.005) end
        assert.is_true(ticks >= 10, "the ticker did not run")
        assert.same({}, got)
        for i = 1, 4 do assert.equal(c, c:sendto("d" .. i, "127.0.0.1", port)) end
        for i = 1, 4 do assert.same({ true, "d" .. i }, { waiters[i]:join(5) }) end
        ticker:cancel()
      end)
      assert.same({
        { 1, "d1", "127.0.0.1", cport }, { 2, "d2", "127.0.0.1", cport },
        { 3, "d3", "127.0.0.1", cport }, { 4, "d4", "127.0.0.1", cport },
      }, got)
    end)

    it("a datagram sent by one task is received by another (sendto, recvfrom, and send/recv)", function()
      local u, port = bound4()
      local c = udp()
      c:settimeout(5)
      local r = { duplex.run(function()
        local t = duplex.spawn(function()
          local d, h, p = u:recvfrom()
          u:sendto(d:upper(), h, p)
          return d
        end)
        helpers.until_waiting(t, "read")
        c:connect("127.0.0.1", port)
        c:send("ping")
        local back = c:recv()
        return back, select(2, t:join(5))
      end) }
      assert.same({ "PING", "ping" }, r)
    end)

    it("close wakes every task waiting on the socket with ECANCELED", function()
      local u, port = bound4()
      local r = { duplex.run(function()
        local a = duplex.spawn(function() return u:recvfrom() end)
        local b = duplex.spawn(function() return u:recvfrom() end)
        helpers.until_waiting(a, "read")
        helpers.until_waiting(b, "turn")
        u:close()
        return { a:join(5) }, { b:join(5) }
      end) }
      local want = { true, nil, "recvfrom 127.0.0.1:" .. port .. ": Operation canceled", "ECANCELED" }
      assert.same({ want, want }, r)
    end)

    it("a task cancelled in recvfrom leaves the socket usable", function()
      local u, port = bound4()
      local c = udp("127.0.0.1", 0)
      local _, cport = c:getsockname()
      local r = { duplex.run(function()
        local t = duplex.spawn(function() return u:recvfrom() end)
        helpers.until_waiting(t, "read")
        t:cancel()
        local j = { t:join(5) }
        c:sendto("after", "127.0.0.1", port)
        return j, { u:recvfrom() }
      end) }
      assert.same({ { false, "canceled" }, { "after", "127.0.0.1", cport } }, r)
    end)
  end)

  describe("options", function()
    it("broadcast, ttl, multicast_ttl, multicast_loop, rcvbuf, sndbuf round trips", function()
      local u = udp()
      assert.is_false(u:getoption("broadcast"))
      assert.equal(u, u:setoption("broadcast", true))
      assert.is_true(u:getoption("broadcast"))
      assert.equal(u, u:setoption("broadcast", false))
      assert.is_false(u:getoption("broadcast"))
      assert.equal(u, u:setoption("ttl", 7))
      assert.equal(7, u:getoption("ttl"))
      assert.equal(u, u:setoption("multicast_ttl", 3))
      assert.equal(3, u:getoption("multicast_ttl"))
      assert.equal(u, u:setoption("multicast_loop", false))
      assert.is_false(u:getoption("multicast_loop"))
      assert.equal(u, u:setoption("multicast_loop", true))
      assert.is_true(u:getoption("multicast_loop"))
      assert.equal(u, u:setoption("rcvbuf", 65536))
      local rb = u:getoption("rcvbuf")
      assert.equal("integer", helpers.mathtype(rb))
      assert.is_true(rb >= 65536, "rcvbuf " .. rb)   -- Linux doubles it
      assert.equal(u, u:setoption("sndbuf", 65536))
      assert.is_true(u:getoption("sndbuf") >= 65536)
      assert.is_false(u:getoption("reuseaddr"))
      assert.is_false(u:getoption("reuseport"))
    end)

    it("IPv6 sockets: ttl (unicast hops), multicast_ttl, multicast_loop", function()
      if not HAS_V6 then pending("no IPv6 on this machine") end
      local u = udp(nil, nil, { family = "inet6" })
      assert.equal(u, u:setoption("ttl", 9))
      assert.equal(9, u:getoption("ttl"))
      assert.equal(u, u:setoption("multicast_ttl", 4))
      assert.equal(4, u:getoption("multicast_ttl"))
      assert.equal(u, u:setoption("multicast_loop", false))
      assert.is_false(u:getoption("multicast_loop"))
    end)

    it("IP options on a Unix socket: nil, msg, ENOPROTOOPT", function()
      local x = udp(nil, nil, { family = "unix" })
      assert.same({ nil, "getoption ttl: Protocol not available", "ENOPROTOOPT" }, { x:getoption("ttl") })
      assert.same({ nil, "setoption ttl: Protocol not available", "ENOPROTOOPT" }, { x:setoption("ttl", 3) })
    end)

    it('getoption("join"/"leave") and unknown options raise; bad values raise', function()
      local u = udp()
      local function err(f, ...)
        local ok, e = pcall(f, u, ...)
        assert.is_false(ok)
        return e
      end
      assert.matches("bad argument #2 .*%(option 'join' is write%-only%)", err(u.getoption, "join"))
      assert.matches("bad argument #2 .*%(option 'leave' is write%-only%)", err(u.getoption, "leave"))
      assert.matches("bad argument #2 .*%(unknown option 'bogus'%)", err(u.getoption, "bogus"))
      assert.matches("bad argument #2 .*%(unknown option 'bogus'%)", err(u.setoption, "bogus", 1))
      assert.matches("bad argument #2 .*%(unknown option 'nodelay'%)", err(u.setoption, "nodelay", true))
      assert.matches("bad argument #3 .*%(hop count out of range%)", err(u.setoption, "ttl", 256))
      assert.matches("bad argument #3 .*%(hop count out of range%)", err(u.setoption, "multicast_ttl", -1))
      assert.matches("bad argument #3 .*boolean expected, got number", err(u.setoption, "broadcast", 1))
      assert.matches("bad argument #3 .*boolean expected, got number", err(u.setoption, "multicast_loop", 1))
      assert.matches("bad argument #3 .*string expected, got no value", err(u.setoption, "join"))
      assert.matches("bad argument #4 .*%(interface index out of range%)",
        err(u.setoption, "join", "239.255.0.1", -1))
    end)

    it("join errors: an unknown interface is ENODEV, a unicast group EINVAL, a bad name EAI_*", function()
      local u = udp("0.0.0.0", 0)
      assert.same({ nil, "join nosuchif0: No such device", "ENODEV" },
        { u:setoption("join", "239.255.0.1", "nosuchif0") })
      local r = { u:setoption("join", "10.0.0.1", "lo") }
      assert.same({ nil, "join 10.0.0.1: Invalid argument", "EINVAL" }, r)
      assert.same({ nil, "join bad..group: Name or service not known", "EAI_NONAME" },
        { u:setoption("join", "bad..group") })
      assert.same({ nil, "leave 239.255.0.1: Cannot assign requested address", "EADDRNOTAVAIL" },
        { u:setoption("leave", "239.255.0.1", "lo") })
    end)
  end)

  describe("multicast on loopback", function()
    -- A group of this process's own: Linux hands a group's datagrams to
    -- every socket bound to their port (IP_MULTICAST_ALL) while any socket
    -- of the host is a member, so a suite run beside this one (CI runs two
    -- at once) would keep this one receiving after its leave.
    local function own_group()
      local f = assert(io.open("/proc/self/stat"))
      local pid = f:read("*n")
      f:close()
      return ("239.255.%d.%d"):format(math.floor(pid / 256) % 256, pid % 256)
    end

    it('join a group on "lo" (by name, index and address): a sender with multicast_loop reaches the member; leave stops it', function()
      local ifaces = { "lo", 1, "127.0.0.1" }
      local group = own_group()
      for _, iface in ipairs(ifaces) do
        local m = udp("0.0.0.0", 0, { reuseaddr = true })
        local _, port = m:getsockname()
        local ok, msg, code = m:setoption("join", group, iface)
        if not ok then
          pending(("the kernel refused to join %s on lo (%s): %s %s"):format(
            group, tostring(iface), tostring(msg), tostring(code)))
        end
        assert.equal(m, ok)
        -- no multicast_interface option: a sender bound to 127.0.0.1 makes
        -- the kernel route the group out of lo
        local s = udp("127.0.0.1", 0)
        local _, sport = s:getsockname()
        assert.equal(s, s:setoption("multicast_loop", true))
        assert.equal(s, s:setoption("multicast_ttl", 1))
        assert.equal(s, s:sendto("to the group", group, port))
        m:settimeout(1)
        local r = { m:recvfrom() }
        if r[1] == nil and r[3] == "ETIMEDOUT" then
          pending("multicast to " .. group .. " is not looped back on lo here (" .. tostring(iface) .. ")")
        end
        assert.same({ "to the group", "127.0.0.1", sport }, r)
        assert.equal(m, m:setoption("leave", group, iface))
        assert.equal(s, s:sendto("after leave", group, port))
        m:settimeout(0.2)
        assert.same({ 3, nil, "ETIMEDOUT" }, fail(m:recvfrom()))
        m:close()
        s:close()
      end
    end)

    it("IPv6: join and leave ff02::114 on lo", function()
      if not HAS_V6 then pending("no IPv6 on this machine") end
      local m = udp("::", 0)
      local ok, msg, code = m:setoption("join", "ff02::114", "lo")
      if not ok then pending("the kernel refused an IPv6 join on lo: " .. tostring(msg) .. " " .. tostring(code)) end
      assert.equal(m, ok)
      assert.equal(m, m:setoption("leave", "ff02::114", "lo"))
      assert.equal(m, m:setoption("join", "ff02::114", 1))
      assert.equal(m, m:setoption("leave", "ff02::114", 1))
    end)
  end)

  describe("life", function()
    it("close is idempotent; tostring and type after close; any other use is nil, msg, 'EBADF'", function()
      local u = assert(duplex.udp("127.0.0.1", 0))
      local _, port = u:getsockname()
      assert.is_true(u:close())
      assert.is_true(u:close())
      assert.equal("duplex.udp (closed)", tostring(u))
      assert.equal("closed udp", duplex.type(u))
      local here = "127.0.0.1:" .. port
      local uses = {
        { "sendto 127.0.0.1:9", u.sendto, "x", "127.0.0.1", 9 },
        { "send " .. here, u.send, "x" },
        { "recvfrom " .. here, u.recvfrom },
        { "recv " .. here, u.recv },
        { "connect " .. here, u.connect, "127.0.0.1", 9 },
        { "getsockname " .. here, u.getsockname },
        { "getpeername " .. here, u.getpeername },
        { "setoption " .. here, u.setoption, "ttl", 1 },
        { "setoption " .. here, u.setoption, "join", "239.255.0.1" },
        { "getoption " .. here, u.getoption, "ttl" },
        { "fileno " .. here, u.fileno },
      }
      for _, use in ipairs(uses) do
        assert.same({ nil, use[1] .. ": socket is closed", "EBADF", n = 3 },
          pack(use[2](u, unpack(use, 3))))
      end
      assert.equal(u, u:settimeout(1))
    end)

    local close_var = helpers.load54([[
      local duplex = ...
      local keep
      do
        local u <close> = assert(duplex.udp("127.0.0.1", 0))
        keep = u
      end
      return keep
    ]], "close_var")
    it("<close> closes it", function()
      if not close_var then pending("Lua 5.4 only: <close>") end
      assert.equal("closed udp", duplex.type(close_var(duplex)))
    end)

    it("__gc closes the descriptors of dropped sockets", function()
      local before = helpers.fdcount()
      for _ = 1, 20 do
        local _ = assert(duplex.udp("127.0.0.1", 0))
        local _ = assert(duplex.udp())
      end
      assert.equal(before, helpers.fdcount())
    end)

    it("duplex.type does not take a udp for something else", function()
      local u = udp()
      assert.equal("udp", duplex.type(u))
      assert.is_nil(duplex.type({}))
      assert.is_nil(duplex.type(io.stdout))
      local ok, e = pcall(u.sendto, io.stdout, "x", "127.0.0.1", 9)
      assert.is_false(ok)
      assert.matches("duplex%.udp expected", e)
    end)
  end)
end)
