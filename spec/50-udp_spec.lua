-- spec/50-udp_spec.lua: duplex.udp datagram sockets (issue 9): bound and
-- unbound sockets of every family, sendto/recvfrom and connect/send/recv
-- round trips, datagrams larger than the caller's max (EMSGSIZE, never cut
-- silently, and the next datagram intact), ICMP port-unreachable as
-- ECONNREFUSED, timeouts, several tasks waiting on one socket, options,
-- multicast on loopback, and the object's life (type, tostring, close, gc).
-- Loopback and port 0 only; every wait is bounded by a timeout.

local duplex = require "duplex"
local helpers = require "spec.helpers"

local defer, run_cleanups = helpers.defer, helpers.run_cleanups
local HAS_V6 = helpers.has_ipv6()

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
  local r = table.pack(...)
  return { r.n, r[1], r[3] }, r[2]
end

local function is_socket(path)
  return os.execute("test -S " .. helpers.shquote(path)) == true
end

-- No name is looked up inside a task here: that would start the lookup
-- pool in busted's own process (spec/51 does it in child processes).

describe("duplex.udp", function()
  after_each(run_cleanups)
  helpers.track_fds()

  describe("making sockets", function()
    it("unbound, IPv4 by default: type, tostring, getsockname", function()
      local u = udp()
      assert.equal("udp", duplex.type(u))
      assert.equal("duplex.udp (unbound)", tostring(u))
      assert.same({ "0.0.0.0", 0, "inet" }, { u:getsockname() })
      assert.equal("integer", math.type(u:fileno()))
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
      assert.equal("integer", math.type(port))
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
      if family == "inet6" then          -- dual-stack: the sender is v4-mapped
        assert.same({ "::", "inet6" }, { host, family })
        assert.same({ "to any", "::ffff:127.0.0.1", cport }, { data, from, fport })
      else
        assert.same({ "0.0.0.0", "inet" }, { host, family })
        assert.same({ "to any", "127.0.0.1", cport }, { data, from, fport })
      end
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
      local r = table.pack(u:recvfrom())
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
      assert.same({ n = 3, "hello", "127.0.0.1", cport }, table.pack(u:recvfrom()))
      assert.same({ n = 3, bin, "127.0.0.1", cport }, table.pack(u:recvfrom()))
      assert.same({ n = 3, "", "127.0.0.1", cport }, table.pack(u:recvfrom()))
      assert.same({ n = 3, "last", "127.0.0.1", cport }, table.pack(u:recvfrom()))
      assert.equal(u, u:sendto("answer", "127.0.0.1", cport))
      assert.same({ "answer", "127.0.0.1", port }, { c:recvfrom() })
    end)

    it("recvfrom(max) with a bigger datagram: nil, msg, EMSGSIZE, and the next datagram is intact", function()
      local u, port = bound4()
      local c = udp()
      assert.equal(c, c:sendto("0123456789", "127.0.0.1", port))
      assert.equal(c, c:sendto("abcd", "127.0.0.1", port))
      local r = table.pack(u:recvfrom(4))
      assert.same({ n = 3, nil, "recvfrom 127.0.0.1:" .. port .. ": Message too long", "EMSGSIZE" }, r)
      local _, cport = c:getsockname()
      assert.same({ "abcd", "127.0.0.1", cport }, { u:recvfrom(4) })
      -- exactly max fits
      assert.equal(c, c:sendto("12345", "127.0.0.1", port))
      assert.same({ "12345", "127.0.0.1", cport }, { u:recvfrom(5) })
      -- the big one was consumed: nothing is left
      u:settimeout(0)
      assert.same({ 3, nil, "EAGAIN" }, fail(u:recvfrom()))
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
      assert.same({ 3, nil, "EMSGSIZE" }, fail(u:recvfrom(59999)))
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
      assert.same({ n = 3, nil, "recvfrom " .. path .. ": Message too long", "EMSGSIZE" }, table.pack(x:recvfrom()))
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
      local r = table.pack(c:sendto(("x"):rep(70000), "127.0.0.1", port))
      assert.same({ n = 3, nil, "sendto 127.0.0.1:" .. port .. ": Message too long", "EMSGSIZE" }, r)
    end)

    it("sendto an address of the other family: nil, msg, EAFNOSUPPORT", function()
      local c = udp()
      local r = table.pack(c:sendto("x", "::1", 9))
      assert.same({ n = 3, nil, "sendto ::1: Address family not supported by protocol", "EAFNOSUPPORT" }, r)
      local x = udp(nil, nil, { family = "unix" })
      r = table.pack(x:sendto("x", "127.0.0.1", 9))
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
      assert.same({ n = 1, "peer" }, table.pack(c:recv()))
      -- recv(max) too small
      assert.equal(u, u:sendto("too long", "127.0.0.1", cport))
      assert.equal(u, u:sendto("ok", "127.0.0.1", cport))
      local r = table.pack(c:recv(3))
      assert.same({ n = 3, nil, "EMSGSIZE" }, { n = 3, r[1], r[3] })
      assert.matches("^recv.*: Message too long$", r[2])
      assert.same({ n = 1, "ok" }, table.pack(c:recv(3)))
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
      local _, sport = s:getsockname()
      assert.equal("duplex.udp (0.0.0.0:" .. sport .. ")", tostring(s))
      assert.same({ "x", "127.0.0.1", sport }, { u:recvfrom() })
    end)

    it("send on an unconnected socket: nil, msg, EDESTADDRREQ", function()
      local c = udp()
      assert.same({ nil, "send: Destination address required", "EDESTADDRREQ" }, { c:send("x") })
    end)

    it("ICMP port unreachable surfaces as ECONNREFUSED on a later recv or send", function()
      local gone = udp("127.0.0.1", 0)
      local _, port = gone:getsockname()
      gone:close()
      local c = udp()
      c:settimeout(2)
      assert.equal(c, c:connect("127.0.0.1", port))
      assert.equal(c, c:send("anyone?"))
      assert.same({ nil, "recv: Connection refused", "ECONNREFUSED" }, { c:recv() })
      -- the error is reported once; the next send goes, the one after fails
      assert.equal(c, c:send("again"))
      local deadline, r = duplex.now() + 2, nil
      repeat
        duplex.sleep(0.01)
        r = table.pack(c:send("again"))
      until r[1] == nil or duplex.now() > deadline
      assert.same({ n = 3, nil, "send: Connection refused", "ECONNREFUSED" }, r)
    end)

    it("ICMP refused inside a task too", function()
      local gone = udp("127.0.0.1", 0)
      local _, port = gone:getsockname()
      gone:close()
      local c = udp()
      c:settimeout(2)
      local r = table.pack(duplex.run(function()
        assert.equal(c, c:connect("127.0.0.1", port))
        assert.equal(c, c:send("anyone?"))
        return c:recv()
      end))
      assert.same({ n = 3, nil, "recv: Connection refused", "ECONNREFUSED" }, r)
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
      assert.same({ nil, "recv: Connection timed out", "ETIMEDOUT" }, { c:recv() })
    end)

    it("inside a task: ETIMEDOUT while the other tasks run", function()
      local u, port = bound4()
      u:settimeout(0.1)
      local ticks = 0
      local r = table.pack(duplex.run(function()
        local ticker = duplex.spawn(function()
          for _ = 1, 500 do ticks = ticks + 1; duplex.sleep(0.005) end
        end)
        local res = table.pack(u:recvfrom())
        ticker:cancel()
        return table.unpack(res, 1, res.n)
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
        duplex.sleep(0.01)
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
        duplex.sleep(0.02)
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
        duplex.sleep(0.02)
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
      assert.equal("integer", math.type(rb))
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
    it('join 239.255.0.1 on "lo" (by name, index and address): a sender with multicast_loop reaches the member; leave stops it', function()
      local ifaces = { "lo", 1, "127.0.0.1" }
      for _, iface in ipairs(ifaces) do
        local m = udp("0.0.0.0", 0, { reuseaddr = true })
        local _, port = m:getsockname()
        local ok, msg, code = m:setoption("join", "239.255.0.1", iface)
        if not ok then
          pending(("the kernel refused to join 239.255.0.1 on lo (%s): %s %s"):format(
            tostring(iface), tostring(msg), tostring(code)))
        end
        assert.equal(m, ok)
        -- no multicast_interface option: a sender bound to 127.0.0.1 makes
        -- the kernel route the group out of lo
        local s = udp("127.0.0.1", 0)
        local _, sport = s:getsockname()
        assert.equal(s, s:setoption("multicast_loop", true))
        assert.equal(s, s:setoption("multicast_ttl", 1))
        assert.equal(s, s:sendto("to the group", "239.255.0.1", port))
        m:settimeout(1)
        local r = { m:recvfrom() }
        if r[1] == nil and r[3] == "ETIMEDOUT" then
          pending("multicast to 239.255.0.1 is not looped back on lo here (" .. tostring(iface) .. ")")
        end
        assert.same({ "to the group", "127.0.0.1", sport }, r)
        assert.equal(m, m:setoption("leave", "239.255.0.1", iface))
        assert.equal(s, s:sendto("after leave", "239.255.0.1", port))
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
    it("close is idempotent; tostring and type after close; any other use raises", function()
      local u = assert(duplex.udp("127.0.0.1", 0))
      assert.is_true(u:close())
      assert.is_true(u:close())
      assert.equal("duplex.udp (closed)", tostring(u))
      assert.equal("closed udp", duplex.type(u))
      local uses = {
        function() return u:sendto("x", "127.0.0.1", 9) end,
        function() return u:send("x") end,
        function() return u:recvfrom() end,
        function() return u:recv() end,
        function() return u:connect("127.0.0.1", 9) end,
        function() return u:getsockname() end,
        function() return u:getpeername() end,
        function() return u:settimeout(1) end,
        function() return u:setoption("ttl", 1) end,
        function() return u:getoption("ttl") end,
        function() return u:fileno() end,
      }
      for i, f in ipairs(uses) do
        local ok, e = pcall(f)
        assert.is_false(ok, "use " .. i .. " did not raise")
        assert.matches("attempt to use a closed duplex%.udp", e)
      end
    end)

    it("<close> closes it", function()
      local keep
      do
        local u <close> = assert(duplex.udp("127.0.0.1", 0))
        keep = u
      end
      assert.equal("closed udp", duplex.type(keep))
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
