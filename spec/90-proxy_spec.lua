-- spec/90-proxy_spec.lua: the PROXY protocol, v1 and v2 (issue 20), opt-in
-- per listener: listen's options proxy, proxy_from and proxy_timeout,
-- hand-written headers over real loopback sockets (getpeername, proxyinfo,
-- the bytes after the header, a header in 1-byte writes, LOCAL, UNKNOWN,
-- the TLVs with a CRC32C, refusals with their codes, a peer outside
-- proxy_from, TLS after the header, serve), then a real HAProxy (mode tcp,
-- send-proxy-v2 and send-proxy, health checks that send LOCAL) and nginx's
-- stream module (proxy_protocol on) in front of two duplex backends.
-- Those last two are pending when haproxy / nginx's stream module are not
-- installed. Loopback only; every wait is for a state, bounded.

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pki = require "spec.tls_pki"
local pack = helpers.pack
local defer, run_cleanups = helpers.defer, helpers.run_cleanups

local SIG = "\r\n\r\n\0\r\nQUIT\n"
local function be16(n) return helpers.be(n, 2) end

-- a xor b for 32-bit integers, on every Lua (no operators needed)
local function bxor(a, b)
  local r, bit = 0, 1
  for _ = 1, 32 do
    if a % 2 ~= b % 2 then r = r + bit end
    a, b, bit = math.floor(a / 2), math.floor(b / 2), bit * 2
  end
  return r
end

-- CRC32C (Castagnoli), as the specification's RFC 4960 appendix B says.
local function crc32c(s)
  local crc = 0xffffffff
  for i = 1, #s do
    crc = bxor(crc, s:byte(i))
    for _ = 1, 8 do
      if crc % 2 == 1 then crc = bxor(math.floor(crc / 2), 0x82f63b78)
      else crc = math.floor(crc / 2) end
    end
  end
  return bxor(crc, 0xffffffff)
end

local function tlv(t, v) return string.char(t) .. be16(#v) .. v end

-- A v2 header: command byte (0x20 LOCAL, 0x21 PROXY), family byte, the
-- address block and TLVs; crc: append a CRC32C TLV computed over it all.
local function v2(cmd, fam, block, tlvs, crc)
  local body = block .. (tlvs or "")
  if crc then body = body .. string.char(3) .. be16(4) .. "\0\0\0\0" end
  local h = SIG .. string.char(cmd, fam) .. be16(#body) .. body
  if crc then h = h:sub(1, -5) .. helpers.be(crc32c(h), 4) end
  return h
end

local function inet4(a, b, c, d) return string.char(a, b, c, d) end

-- A proxy server on 127.0.0.1 (opts added to proxy = true), closed when
-- the test ends.
local function proxy_server(opts)
  local o = { proxy = true }
  for k, v in pairs(opts or {}) do o[k] = v end
  local srv = assert(duplex.listen("127.0.0.1", 0, o))
  defer(function() srv:close() end)
  local _, port = srv:getsockname()
  return srv, port
end

local function connect(port, opts)
  local o = { timeout = 5 }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = assert(duplex.connect("127.0.0.1", port, o))
  defer(function() c:close() end)
  return c
end

-- Accept one connection (its header read): the client, closed when the
-- test ends, or nil, msg, code.
local function accept(srv, t)
  local r = pack(srv:accept(t or 5))
  if r[1] then
    defer(function() r[1]:close() end)
    r[1]:settimeout(5)
  end
  return r[1], r[2], r[3]
end

local function argerr(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  return (tostring(err):match("%((.*)%)$"))
end

describe("PROXY protocol", function()
  after_each(run_cleanups)
  helpers.track_fds()

  describe("listen's options", function()
    it("checks proxy, proxy_from and proxy_timeout", function()
      local function listen(o) return function() duplex.listen("127.0.0.1", 0, o) end end
      assert.equal("option 'proxy' must be a boolean", argerr(listen { proxy = "yes" }))
      assert.equal("option 'proxy_from' needs proxy = true", argerr(listen { proxy_from = { "127.0.0.1" } }))
      assert.equal("option 'proxy_timeout' needs proxy = true", argerr(listen { proxy_timeout = 1 }))
      assert.equal("option 'proxy_timeout' must be a positive number",
        argerr(listen { proxy = true, proxy_timeout = 0 }))
      assert.equal("option 'proxy_from' must list at least one address",
        argerr(listen { proxy = true, proxy_from = {} }))
      assert.equal("option 'proxy_from': '10.0.0.1/8': bits set beyond the prefix length",
        argerr(listen { proxy = true, proxy_from = { "10.0.0.1/8" } }))
      assert.equal("option 'proxy_from': 'localhost': not an IPv4 or IPv6 address",
        argerr(listen { proxy = true, proxy_from = { "localhost" } }))
      assert.equal("option 'proxy_from': '10.0.0.0/33': a prefix length out of range",
        argerr(listen { proxy = true, proxy_from = "10.0.0.0/33" }))
      assert.equal("option 'proxy_from' must be an address or a list of addresses",
        argerr(listen { proxy = true, proxy_from = { 10 } }))
      -- off: the same as without
      local srv = assert(duplex.listen("127.0.0.1", 0, { proxy = false }))
      srv:close()
    end)

    it("proxyinfo is nil without the option, and a closed client's is EBADF", function()
      local c, p = helpers.deferred_pair()
      assert.same(pack(nil), pack(p:proxyinfo()))
      assert.same(pack(nil), pack(c:proxyinfo()))
      p:close()
      local r = pack(p:proxyinfo())
      assert.same({ n = 3, nil, r[2], "EBADF" }, r)
    end)
  end)

  describe("v1", function()
    it("TCP4: getpeername is the client, the bytes after the line stay", function()
      local srv, port = proxy_server()
      local c = connect(port)
      local line = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
      assert(c:write(line, "GET / HTTP/1.0\r\n\r\n"))
      local p = assert(accept(srv))
      assert.same(pack("192.168.0.1", 56324, "inet"), pack(p:getpeername()))
      assert.same({
        version = 1, command = "PROXY", family = "inet", protocol = "stream",
        source = "192.168.0.1", source_port = 56324,
        destination = "192.168.0.11", destination_port = 443, header = line,
      }, p:proxyinfo())
      assert.equal("GET / HTTP/1.0", p:read("l"))
      assert.equal("", p:read("l"))
      assert.matches("-> 192%.168%.0%.1:56324%)$", tostring(p))
      -- the connection's own peer is still the proxy's
      local h, cport = c:getsockname()
      assert.equal("127.0.0.1", h)
      assert(p:write("hi\n"))
      assert.equal("hi", c:read("l"))
      assert.is_number(cport)
    end)

    it("TCP6", function()
      local srv, port = proxy_server()
      local c = connect(port)
      assert(c:write("PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\nx"))
      local p = assert(accept(srv))
      assert.same(pack("2001:db8::1", 65535, "inet6"), pack(p:getpeername()))
      local i = p:proxyinfo()
      assert.same({ "inet6", "2001:db8::2", 0 }, { i.family, i.destination, i.destination_port })
      assert.equal("x", p:read(1))
    end)

    it("UNKNOWN keeps the real peer", function()
      local srv, port = proxy_server()
      local c = connect(port)
      assert(c:write("PROXY UNKNOWN ffff:f::1 whatever 1 2\r\n"))
      local p = assert(accept(srv))
      local _, cport = c:getsockname()
      assert.same(pack("127.0.0.1", cport, "inet"), pack(p:getpeername()))
      assert.same({ version = 1, command = "PROXY", family = "unspec", protocol = "unspec",
                    header = "PROXY UNKNOWN ffff:f::1 whatever 1 2\r\n" }, p:proxyinfo())
    end)
  end)

  describe("v2", function()
    it("INET with TLVs (ALPN, authority, unique id, SSL, netns, custom, CRC32C)", function()
      local srv, port = proxy_server()
      local c = connect(port)
      local ssl = string.char(7) .. "\0\0\0\0" .. tlv(0x21, "TLSv1.3") .. tlv(0x22, "alice")
        .. tlv(0x23, "TLS_AES_128_GCM_SHA256") .. tlv(0x24, "RSA-SHA256") .. tlv(0x25, "RSA2048")
      local tlvs = tlv(1, "h2") .. tlv(2, "example.com") .. tlv(4, "pad") .. tlv(5, "id-42")
        .. tlv(0x20, ssl) .. tlv(0x30, "blue") .. tlv(0xE0, "\0custom")
      local h = v2(0x21, 0x11, inet4(10, 1, 2, 3) .. inet4(10, 9, 8, 7) .. be16(41234) .. be16(8443), tlvs, true)
      assert(c:write(h, "after"))
      local p = assert(accept(srv))
      assert.same(pack("10.1.2.3", 41234, "inet"), pack(p:getpeername()))
      local crc = 0
      for i = #h - 3, #h do crc = crc * 256 + h:byte(i) end
      assert.same({
        version = 2, command = "PROXY", family = "inet", protocol = "stream",
        source = "10.1.2.3", source_port = 41234, destination = "10.9.8.7", destination_port = 8443,
        header = h,
        tlvs = {
          alpn = "h2", authority = "example.com", unique_id = "id-42", netns = "blue",
          [0xE0] = "\0custom", crc32c = crc,
          ssl = { client = 7, verify = 0, client_ssl = true, cert_conn = true, cert_sess = true,
                  verified = true, version = "TLSv1.3", cn = "alice",
                  cipher = "TLS_AES_128_GCM_SHA256", sig_alg = "RSA-SHA256", key_alg = "RSA2048" },
        },
      }, p:proxyinfo())
      assert.equal("after", p:read(5))
    end)

    it("INET6, and UNIX whose source is a path", function()
      local srv, port = proxy_server()
      local a6 = ("\32\1\13\184" .. ("\0"):rep(11) .. "\5")
      local c = connect(port)
      assert(c:write(v2(0x21, 0x21, a6 .. a6 .. be16(1) .. be16(2))))
      local p = assert(accept(srv))
      assert.same(pack("2001:db8::5", 1, "inet6"), pack(p:getpeername()))
      local path = function(s) return s .. ("\0"):rep(108 - #s) end
      local c2 = connect(port)
      assert(c2:write(v2(0x21, 0x31, path("/run/client.sock") .. path("/run/server.sock")), "u"))
      local p2 = assert(accept(srv))
      assert.same(pack("/run/client.sock", nil, "unix"), pack(p2:getpeername()))
      local i = p2:proxyinfo()
      assert.same({ "unix", "stream", "/run/client.sock", "/run/server.sock" },
        { i.family, i.protocol, i.source, i.destination })
      assert.equal("u", p2:read(1))
    end)

    it("LOCAL (a health check) keeps the real peer, whatever its block says", function()
      local srv, port = proxy_server()
      local c = connect(port)
      local h = v2(0x20, 0x11, inet4(1, 2, 3, 4) .. inet4(5, 6, 7, 8) .. be16(1) .. be16(2))
      assert(c:write(h))
      local p = assert(accept(srv))
      local _, cport = c:getsockname()
      assert.same(pack("127.0.0.1", cport, "inet"), pack(p:getpeername()))
      assert.same({ version = 2, command = "LOCAL", family = "inet", protocol = "stream",
                    header = h, tlvs = {} }, p:proxyinfo())
      -- the short form HAProxy sends
      local c2 = connect(port)
      assert(c2:write(SIG .. "\32\0\0\0"))
      local p2 = assert(accept(srv))
      local _, cport2 = c2:getsockname()
      assert.same(pack("127.0.0.1", cport2, "inet"), pack(p2:getpeername()))
      assert.equal("unspec", p2:proxyinfo().family)
      c2:close()                              -- and it hangs up: the end, no error
      assert.equal("", p2:read("a"))
    end)
  end)

  describe("refuses", function()
    local bad = {
      { "not a header", "GET / HTTP/1.1\r\n\r\n", "not a PROXY header" },
      { "v1 port with a leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 080 80\r\n",
        "v1: a port that is not 0..65535 without leading zeros" },
      { "v1 two spaces", "PROXY TCP4 1.2.3.4  5.6.7.8 80 80\r\n",
        "v1: fields not separated by exactly one space" },
      { "v1 LF alone", "PROXY TCP4 1.2.3.4 5.6.7.8 80 80\n",
        "v1: a LF without CR" },
      { "v1 an IPv6 address in TCP4", "PROXY TCP4 ::1 ::1 80 80\r\n",
        "v1: a character that is no part of an address or port" },
      { "v1 octal-looking address", "PROXY TCP4 01.2.3.4 5.6.7.8 80 80\r\n",
        "v1: a source address that is no IPv4 address" },
      { "v1 port over 65535", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n",
        "v1: a port that is not 0..65535 without leading zeros" },
      { "v1 UDP4", "PROXY UDP4 1.2.3.4 5.6.7.8 80 80\r\n", "v1: not TCP4, TCP6 or UNKNOWN" },
      { "v1 no CRLF in 107 bytes", "PROXY UNKNOWN " .. ("x"):rep(100), "v1: no CRLF within 107 bytes" },
      { "v2 version 1", SIG .. "\17\17\0\0", "v2: a version other than 2" },
      { "v2 command 2", SIG .. "\34\17\0\0", "v2: a command other than LOCAL or PROXY" },
      { "v2 family 4", SIG .. "\33\65\0\0", "v2: an unknown address family or protocol" },
      { "v2 address block short", SIG .. "\33\17" .. be16(4) .. "\1\2\3\4",
        "v2: an address block shorter than its family's" },
      { "v2 TLV past the end", v2(0x21, 0x11, ("\1"):rep(12), "\1\0\9ab"),
        "v2: a TLV longer than the header" },
      { "v2 UNIQUE_ID over 128", v2(0x21, 0x11, ("\1"):rep(12), tlv(5, ("u"):rep(129))),
        "v2: a UNIQUE_ID longer than 128 bytes" },
    }
    for _, case in ipairs(bad) do
      it(case[1] .. ": EPROTO, and the connection is closed", function()
        local srv, port = proxy_server()
        local c = connect(port)
        assert(c:write(case[2]))
        local _, cport = c:getsockname()
        assert.same(pack(nil, ("proxy header 127.0.0.1:%d: %s"):format(cport, case[3]), "EPROTO"),
          pack(srv:accept(5)))
        local r = pack(c:read("a"))
        assert.is_true(r[1] == "" or r[3] == "ECONNRESET")
      end)
    end

    it("a CRC32C that does not match", function()
      local srv, port = proxy_server()
      local c = connect(port)
      local h = v2(0x21, 0x11, ("\1"):rep(12), tlv(1, "h2"), true)
      h = h:sub(1, -2) .. string.char((h:byte(-1) + 1) % 256)
      assert(c:write(h))
      local r = pack(srv:accept(5))
      assert.same({ nil, "v2: the CRC32C does not match", "EPROTO" },
        { r[1], r[2]:match(": (v2.*)$"), r[3] })
    end)

    it("a connection that ends before a whole header", function()
      local srv, port = proxy_server()
      local c = connect(port)
      assert(c:write("PROXY TCP4 1.2"))
      c:shutdown("w")
      local r = pack(srv:accept(5))
      assert.same({ n = 3, nil, r[2], "EPROTO" }, r)
      assert.matches(": the connection ended before a whole header$", r[2])
    end)

    it("no header within proxy_timeout: ETIMEDOUT", function()
      local srv, port = proxy_server({ proxy_timeout = 0.2 })
      local c = connect(port)
      assert(c:write("PROXY TCP4 "))
      local _, cport = c:getsockname()
      local t, a, b, code = helpers.timed(function() return srv:accept(5) end)
      assert.same(pack(nil, ("proxy header 127.0.0.1:%d: Connection timed out"):format(cport), "ETIMEDOUT"),
        pack(a, b, code))
      assert.is_true(t >= 0.2 and t < 4)
      assert.equal("", c:read("a"))
    end)

    it("a peer outside proxy_from, before reading a byte: EACCES", function()
      local srv, port = proxy_server({ proxy_from = { "127.0.0.1" } })
      local c = connect(port, { bind = "127.0.0.2" })
      assert(c:write("PROXY TCP4 6.6.6.6 1.1.1.1 1 2\r\n"))
      local _, cport = c:getsockname()
      assert.same(pack(nil, ("proxy header 127.0.0.2:%d: not a trusted proxy (proxy_from)"):format(cport),
        "EACCES"), pack(srv:accept(5)))
      local r = pack(c:read("a"))
      assert.is_true(r[1] == "" or r[3] == "ECONNRESET")
      -- the next one, from a trusted proxy, is accepted
      local c2 = connect(port)
      assert(c2:write("PROXY TCP4 6.6.6.6 1.1.1.1 1 2\r\n"))
      local p = assert(accept(srv))
      assert.equal("6.6.6.6", (p:getpeername()))
    end)

    it("proxy_from takes ranges, and defaults to loopback only", function()
      local srv, port = proxy_server({ proxy_from = { "10.0.0.0/8", "127.0.0.0/30" } })
      local c = connect(port, { bind = "127.0.0.2" })
      assert(c:write("PROXY UNKNOWN\r\n"))
      assert(accept(srv))
      local c2 = connect(port, { bind = "127.0.0.4" })
      assert(c2:write("PROXY UNKNOWN\r\n"))
      assert.equal("EACCES", select(3, srv:accept(5)))
      local srv2, port2 = proxy_server({ proxy_from = { "::1", "10.0.0.0/8" } })
      local c3 = connect(port2)
      assert(c3:write("PROXY UNKNOWN\r\n"))
      assert.equal("EACCES", select(3, srv2:accept(5)))
      local srv4, port4 = proxy_server({ proxy_from = { "::ffff:127.0.0.0/104" } })
      local c5 = connect(port4)                  -- an IPv4 peer, in a v4-mapped range
      assert(c5:write("PROXY UNKNOWN\r\n"))
      assert(accept(srv4))
      local srv3, port3 = proxy_server()         -- default: 127.0.0.0/8 and ::1
      local c4 = connect(port3, { bind = "127.0.0.9" })
      assert(c4:write("PROXY UNKNOWN\r\n"))
      assert(accept(srv3))
    end)
  end)

  describe("listeners", function()
    it("on a Unix socket every peer may send a header", function()
      local path = helpers.tmpname()
      local srv = assert(duplex.listen("unix:" .. path, nil, { proxy = true, proxy_from = { "10.0.0.1" } }))
      defer(function() srv:close() end)
      local c = assert(duplex.connect("unix:" .. path, nil, { timeout = 5 }))
      defer(function() c:close() end)
      assert(c:write(v2(0x21, 0x11, inet4(10, 0, 0, 7) .. inet4(10, 0, 0, 8) .. be16(70) .. be16(80)), "u\n"))
      local p = assert(accept(srv))
      assert.same(pack("10.0.0.7", 70, "inet"), pack(p:getpeername()))
      assert.equal("u", p:read("l"))
    end)

    it('"*" (dual-stack): an IPv4 peer counts as its IPv4 address', function()
      if not helpers.has_ipv6() then pending("no IPv6 on this machine") end
      local srv = assert(duplex.listen("*", 0, { proxy = true, proxy_from = { "127.0.0.1" } }))
      defer(function() srv:close() end)
      local _, port = srv:getsockname()
      local c = connect(port)
      assert(c:write("PROXY TCP4 192.0.2.44 192.0.2.1 1000 2000\r\n"))
      local p = assert(accept(srv))
      assert.same(pack("192.0.2.44", 1000, "inet"), pack(p:getpeername()))
      local c6 = assert(duplex.connect("::1", port, { timeout = 5 }))
      defer(function() c6:close() end)
      assert(c6:write("PROXY TCP4 192.0.2.44 192.0.2.1 1000 2000\r\n"))
      assert.equal("EACCES", select(3, srv:accept(5)))
    end)
  end)

  describe("examples/proxy_backend.lua", function()
    it("answers with the client's address from the header, and ends on SIGTERM", function()
      local proc = helpers.spawn_process(helpers.lua .. " examples/proxy_backend.lua 127.0.0.1 0")
      defer(function() proc:close() end)
      local port = helpers.tointeger(tonumber((proc:read("l") or ""):match("^listening 127%.0%.0%.1 (%d+)$")))
      assert.is_number(port)
      local c = connect(port)
      assert(c:write(v2(0x20, 0x00, ""))) -- a health check first: counted, not answered
      assert.same(pack(""), pack(c:read("a")))
      local c2 = connect(port)
      assert(c2:write("PROXY TCP4 203.0.113.7 127.0.0.1 4242 80\r\nhi\n"))
      assert.equal("you are 203.0.113.7 port 4242 (PROXY v1; 1 health checks so far): hi", c2:read("l"))
      c2:close()
      proc:kill("TERM")
      assert.same({ true, "exit", 0 }, { proc:wait(10) })
    end)
  end)

  describe("inside duplex.run", function()
    it("a header in 1-byte writes is read as it comes, and the data after it", function()
      duplex.run(function()
        local srv, port = proxy_server()
        local got
        local acc = duplex.spawn(function()
          local p = assert(accept(srv))
          got = { p:getpeername() }
          return p:read("l")
        end)
        local c = connect(port)
        local h = v2(0x21, 0x11, inet4(192, 0, 2, 1) .. inet4(192, 0, 2, 2) .. be16(7) .. be16(8), tlv(1, "http/1.1"))
        for i = 1, #h do
          helpers.until_waiting(acc, "read")
          assert(c:write(h:sub(i, i)))
        end
        helpers.until_waiting(acc, "read")
        assert(c:write("line\n"))
        assert.same(pack(true, "line"), pack(acc:join(5)))
        assert.same({ "192.0.2.1", 7, "inet" }, got)
      end)
    end)

    it("TLS after the header, with the ClientHello in the same receive", function()
      duplex.run(function()
        local srv, port = proxy_server({ tls = pki.server_opts() })
        local client = duplex.spawn(function()
          local c = connect(port)
          assert(c:write(v2(0x21, 0x11, inet4(203, 0, 113, 9) .. inet4(1, 1, 1, 1) .. be16(5555) .. be16(443))))
          assert(c:starttls(pki.client_opts({ servername = "localhost" }), 5))
          assert(c:write("over tls\n"))
          return c:read("l")
        end)
        helpers.until_waiting(client, "read")  -- the hello is sent: both come in one receive
        local p = assert(accept(srv))
        assert.same(pack("203.0.113.9", 5555, "inet"), pack(p:getpeername()))
        assert(p:handshake(5))
        assert.equal("over tls", p:read("l"))
        assert(p:write("ok\n"))
        assert.same(pack(true, "ok"), pack(client:join(5)))
        assert.is_string(p:tlsinfo().version)
      end)
    end)

    it("serve: the handler sees the client; refusals are reported; a slow header holds up nobody", function()
      local reports = {}
      local old = duplex.onerror(function(err) reports[#reports + 1] = tostring(err) end)
      defer(function() duplex.onerror(old) end)
      duplex.run(function()
        local srv, port = proxy_server({ proxy_from = { "127.0.0.1" }, proxy_timeout = 5 })
        duplex.spawn(function()
          srv:serve(function(c)
            local host, cport = c:getpeername()
            local info = c:proxyinfo()
            c:write(("%s %s v%d %s\n"):format(host, tostring(cport), info.version, c:read("l") or "-"))
          end)
        end)
        local slow = connect(port)           -- connected, sends nothing yet
        local c = connect(port)
        assert(c:write("PROXY TCP4 198.51.100.7 1.1.1.1 4242 80\r\nq\n"))
        assert.equal("198.51.100.7 4242 v1 q", c:read("l"))
        local stranger = connect(port, { bind = "127.0.0.2" })
        assert(stranger:write("PROXY TCP4 198.51.100.7 1.1.1.1 4242 80\r\n"))
        local r = pack(stranger:read("a"))    -- closed unread: a reset, or an end
        assert.is_true(r[1] == "" or r[3] == "ECONNRESET")
        local bad = connect(port)
        assert(bad:write("HELLO\r\n"))
        r = pack(bad:read("a"))
        assert.is_true(r[1] == "" or r[3] == "ECONNRESET")
        assert(slow:write(v2(0x21, 0x11, inet4(9, 9, 9, 9) .. inet4(1, 1, 1, 1) .. be16(9) .. be16(1)), "s\n"))
        assert.equal("9.9.9.9 9 v2 s", slow:read("l"))
        helpers.wait_until(function() return #reports >= 2 end)
        srv:close()
      end)
      table.sort(reports)
      assert.equal(2, #reports)
      assert.matches("^proxy header 127%.0%.0%.1:%d+: not a PROXY header$", reports[1])
      assert.matches("^proxy header 127%.0%.0%.2:%d+: not a trusted proxy %(proxy_from%)$", reports[2])
    end)
  end)
end)

-- Real proxies in front of two duplex backends (127.0.0.2 and 127.0.0.3,
-- proxy = true with the default proxy_from), the clients connecting from
-- 127.0.0.5: every request is answered, and each backend names the true
-- client. The proxy runs as a child process, ended by its pid, without
-- the preloads of the run (make asan's runtimes, the shortio shim that
-- cuts every socket call: those are for duplex, not for HAProxy).
local has = function(cmd) return helpers.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true end
local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end
local HAPROXY = has("haproxy") and "haproxy" or exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy"
local NGINX = has("nginx") and "nginx" or exists("/usr/sbin/nginx") and "/usr/sbin/nginx"
local NGINX_STREAM = NGINX and exists("/usr/lib/nginx/modules/ngx_stream_module.so")

-- A port free on 127.0.0.1 now (the kernel's choice; the proxy binds it next).
local function free_port()
  local s = assert(duplex.listen("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

-- Inside run: the two backends, serving; returns them and their record:
-- rec.checks[name] (LOCAL health checks), rec.seen[name] (requests).
local function backends()
  local rec = { checks = { s1 = 0, s2 = 0 }, seen = { s1 = 0, s2 = 0 } }
  local list = {}
  for i, host in ipairs({ "127.0.0.2", "127.0.0.3" }) do
    local name = "s" .. i
    local srv = assert(duplex.listen(host, 0, { proxy = true }))
    defer(function() srv:close() end)
    local _, port = srv:getsockname()
    list[i] = { srv = srv, port = port, name = name }
    duplex.spawn(function()
      srv:serve(function(c)
        local info = c:proxyinfo()
        if info.command == "LOCAL" then
          rec.checks[name] = rec.checks[name] + 1
          return
        end
        local line = c:read("l")
        if not line then return end             -- a v1 health check: connects and goes
        rec.seen[name] = rec.seen[name] + 1
        local host2 = c:getpeername()
        c:write(("%s %s v%d %s\n"):format(name, host2, info.version, line))
      end)
    end)
  end
  return list, rec
end

-- Inside run: connect from 127.0.0.5 to port until the proxy listens.
local function connect_when_up(port)
  return helpers.wait_until(function()
    return duplex.connect("127.0.0.1", port, { bind = "127.0.0.5", timeout = 5 })
  end, 10, "the proxy to listen on " .. port)
end

-- n requests through port: each answered by a backend that names
-- 127.0.0.5; returns the count per backend.
local function requests(port, n, version)
  local per = { s1 = 0, s2 = 0 }
  for i = 1, n do
    local c = connect_when_up(port)
    assert(c:write("hello " .. i .. "\n"))
    local line = c:read("l")
    c:close()
    local name, host, v, echo = (line or ""):match("^(s%d) (%S+) v(%d) (.*)$")
    assert.same({ "127.0.0.5", tostring(version), "hello " .. i }, { host, v, echo }, line)
    per[name] = per[name] + 1
  end
  return per
end

describe("PROXY protocol behind a real proxy", function()
  after_each(run_cleanups)

  it("HAProxy (mode tcp): send-proxy-v2 with LOCAL health checks, and send-proxy (v1)", function()
    if not HAPROXY then pending("haproxy is not installed (Debian: apt-get install haproxy)") end
    local dir = helpers.mktemp_dir("haproxy")
    defer(function() os.execute("rm -rf " .. helpers.shquote(dir)) end)
    duplex.run(function()
      local be, rec = backends()
      local fe2, fe1 = free_port(), free_port()
      local cfg = table.concat({
        "global", "  maxconn 200",
        "defaults", "  mode tcp", "  timeout connect 5s", "  timeout client 30s", "  timeout server 30s",
        "frontend fe2", ("  bind 127.0.0.1:%d"):format(fe2), "  default_backend be2",
        "frontend fe1", ("  bind 127.0.0.1:%d"):format(fe1), "  default_backend be1",
        "backend be2", "  balance roundrobin",
        ("  server s1 127.0.0.2:%d send-proxy-v2 check check-send-proxy inter 200ms"):format(be[1].port),
        ("  server s2 127.0.0.3:%d send-proxy-v2 check check-send-proxy inter 200ms"):format(be[2].port),
        "backend be1", "  balance roundrobin",
        ("  server s1 127.0.0.2:%d send-proxy"):format(be[1].port),
        ("  server s2 127.0.0.3:%d send-proxy"):format(be[2].port),
        "",
      }, "\n")
      helpers.spit(dir .. "/haproxy.cfg", cfg)
      local proc = helpers.spawn_process(("env -u LD_PRELOAD %s -f %s/haproxy.cfg -db > %s/haproxy.log 2>&1"):format(HAPROXY, dir, dir))
      defer(function() proc:close() end)
      -- the health checks reach both backends, as LOCAL
      helpers.wait_until(function() return rec.checks.s1 > 0 and rec.checks.s2 > 0 end, 10,
        "HAProxy's health checks (log: " .. tostring(helpers.slurp(dir .. "/haproxy.log")) .. ")")
      local v2 = requests(fe2, 20, 2)
      assert.same({ s1 = 10, s2 = 10 }, v2)
      local v1 = requests(fe1, 10, 1)
      assert.same({ s1 = 5, s2 = 5 }, v1)
      assert.same({ s1 = 15, s2 = 15 }, rec.seen)
      proc:close()
      for _, b in ipairs(be) do b.srv:close() end
    end)
  end)

  it("nginx's stream module with proxy_protocol on (v1)", function()
    if not NGINX_STREAM then
      pending("nginx's stream module is not installed (Debian: apt-get install nginx libnginx-mod-stream)")
    end
    local dir = helpers.mktemp_dir("nginx")
    defer(function() os.execute("rm -rf " .. helpers.shquote(dir)) end)
    duplex.run(function()
      local be, rec = backends()
      local fe = free_port()
      local cfg = table.concat({
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;",
        "daemon off;", "master_process off;",
        ("pid %s/nginx.pid;"):format(dir), ("error_log %s/error.log;"):format(dir),
        "events { worker_connections 256; }",
        "stream {",
        ("  upstream be { server 127.0.0.2:%d; server 127.0.0.3:%d; }"):format(be[1].port, be[2].port),
        ("  server { listen 127.0.0.1:%d; proxy_pass be; proxy_protocol on; }"):format(fe),
        "}", "",
      }, "\n")
      helpers.spit(dir .. "/nginx.conf", cfg)
      local proc = helpers.spawn_process(("env -u LD_PRELOAD %s -p %s -e %s/error.log -c %s/nginx.conf > %s/out.log 2>&1")
        :format(NGINX, dir, dir, dir, dir))
      defer(function() proc:close() end)
      local per = requests(fe, 10, 1)
      assert.same({ s1 = 5, s2 = 5 }, per)
      assert.same({ s1 = 5, s2 = 5 }, rec.seen)
      proc:close()
      for _, b in ipairs(be) do b.srv:close() end
    end)
  end)
end)
