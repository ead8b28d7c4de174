-- spec/81-ssl_face_spec.lua: duplex.ssl, LuaSec's `ssl` module on
-- duplex's TLS and LuaSocket's face. Real loopback sockets, the test PKI
-- (spec/tls_pki.lua), openssl s_server and s_client as peers, LuaSec's own
-- ssl/https.lua (Debian's lua-sec) over the faces, and the way copas
-- drives a connection (timeout 0, dohandshake until it stops saying
-- "wantread"/"wantwrite", select on the connection). Whole results
-- asserted. Pending where LuaSocket's Lua modules or lua-sec are missing.
-- With DUPLEX_COPAS_SRC naming a copy of copas 4 (lunarmodules/copas),
-- copas itself serves and dials TLS on the faces.

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pki = require "spec.tls_pki"
local pack = helpers.pack

local P = pki.get()
local sh = pki.shquote
local defer, run_cleanups = helpers.defer, helpers.run_cleanups

local function all(...) return pack(...) end

-- package.searchpath, which PUC Lua 5.1 lacks.
local function findfile(name)
  name = name:gsub("%.", "/")
  for template in package.path:gmatch("[^;]+") do
    local f = io.open((template:gsub("%?", name)), "r")
    if f then f:close(); return true end
  end
  return false
end

-- LuaSocket's and LuaSec's Lua files as Debian ships them (5.1's
-- directory serves every Lua: they are plain Lua).
package.path = package.path .. ";/usr/share/lua/5.1/?.lua"
for _, name in ipairs({ "socket", "socket.core", "socket.http", "socket.url", "socket.headers",
                        "ltn12", "mime", "ssl", "ssl.https", "copas" }) do
  package.loaded[name] = nil
end
local face = require "duplex.socket"
local has_luasocket = findfile("socket") and findfile("ltn12") and findfile("socket.http")
local socket = has_luasocket and face.install() or face
local ssl = require("duplex.ssl").install()
-- install() ignores SIGPIPE as LuaSocket does (through onsignal): put it back.
teardown(function() duplex.onsignal("PIPE", nil) end)
local has_https = has_luasocket and findfile("ssl.https")
local https = has_https and require "ssl.https"

-- The resolver's pipe and OpenSSL's lazily made state, made now: no test
-- counts them as its leak.
pcall(duplex.run, function()
  local c, p, srv = pki.pair()
  pki.close(c, p, srv)
end)

local function peer(proc)
  defer(function() proc:close() end)
  return proc
end

local function s_server(args, opts)
  local proc, port = pki.s_server(args, opts)
  peer(proc)
  return proc, port
end

local function www(leaf)
  return s_server(("-naccept 1 -www -cert %s -key %s"):format(sh(P[leaf].crt), sh(P[leaf].key)))
end

local CLIENT = { mode = "client", protocol = "any" }

local function params(base, extra)
  local o = {}
  for k, v in pairs(base) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- A face client connected to host:port, wrapped with params; timeout 5.
local function dial(port, p, host)
  local c = assert(socket.tcp())
  assert.equal(1, c:connect(host or "localhost", port))
  defer(function() c:close() end)
  local s = assert(ssl.wrap(c, p))
  defer(function() s:close() end)
  s:settimeout(5)
  return s, c
end

-- A face server on 127.0.0.1, a face client connected to it and the
-- accepted end: client, accepted, server, port.
local function facepair()
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local c = assert(socket.tcp())
  assert.equal(1, c:connect("127.0.0.1", port))
  local a = assert(srv:accept())
  defer(function() c:close(); a:close(); srv:close() end)
  return c, a, srv, port
end

-- copas's way: every connection at timeout 0, dohandshake again after
-- select says the direction it asked for is ready. Returns each one's
-- final results and how often each want was said.
local function handshake_all(conns)
  local res, wants = {}, { wantread = 0, wantwrite = 0 }
  local deadline = duplex.now() + 10
  for _, s in ipairs(conns) do s:settimeout(0) end
  while true do
    local r, w, left = {}, {}, 0
    for i, s in ipairs(conns) do
      if res[i] == nil then
        local got = all(s:dohandshake())
        if got[1] then res[i] = got
        elseif got[2] == "wantread" then r[#r + 1] = s; left = left + 1
        elseif got[2] == "wantwrite" then w[#w + 1] = s; left = left + 1
        else res[i] = got end
        if not got[1] and wants[got[2]] then wants[got[2]] = wants[got[2]] + 1 end
      end
    end
    if left == 0 then return res, wants end
    assert(duplex.now() < deadline, "the handshakes did not end")
    socket.select(r, w, 1)
  end
end

-- Both ends of a face pair wrapped (client params cp, server params sp)
-- and their handshakes run as copas runs them.
local function tlspair(cp, sp, sni)
  local c, a = facepair()
  local cs = assert(ssl.wrap(c, cp))
  local ss = assert(ssl.wrap(a, sp))
  defer(function() cs:close(); ss:close() end)
  if sni then sni(cs, ss) end
  local res, wants = handshake_all({ cs, ss })
  return cs, ss, res, wants
end

local SERVER = function(extra)
  return params({ mode = "server", protocol = "any", certificate = P.server.crt, key = P.server.key }, extra)
end

describe("duplex.ssl's shape", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("is what require \"ssl\" gives once installed, and install is idempotent", function()
    assert.equal(ssl, require "ssl")
    assert.equal(ssl, ssl.install())
    assert.equal("1.2.0", ssl._VERSION)
    assert.is_function(ssl.newcontext)
    assert.is_function(ssl.wrap)
  end)

  it("names contexts and connections as LuaSec does, and has LuaSec's methods", function()
    local ctx = assert(ssl.newcontext(params(CLIENT, { cafile = P.ca })))
    assert.matches("^SSL context: 0x%x+$", tostring(ctx))
    assert.equal("SSL:Context", getmetatable(ctx).__name)
    local c = facepair()
    local s = assert(ssl.wrap(c, ctx))
    assert.matches("^SSL connection: 0x%x+$", tostring(s))
    assert.equal("SSL:Connection", getmetatable(s).__name)
    for _, m in ipairs({ "close", "dirty", "dohandshake", "getalpn", "getfd", "getpeercertificate",
      "getpeerverification", "getsniname", "getstats", "info", "receive", "send", "setstats",
      "settimeout", "sni", "want" }) do
      assert.is_function(getmetatable(s).__index[m], m)
    end
    s:close()
    assert.matches("^SSL connection: 0x%x+ %(closed%)$", tostring(s))
  end)

  it("refuses parameters as LuaSec does, and files duplex cannot load", function()
    assert.same(all(nil, "invalid mode"), all(ssl.newcontext{ protocol = "any" }))
    assert.same(all(nil, "invalid protocol (tlsv1)"), all(ssl.newcontext{ mode = "client", protocol = "tlsv1" }))
    assert.same(all(nil, "invalid verify option (bogus)"),
      all(ssl.newcontext(params(CLIENT, { verify = { "peer", "bogus" } }))))
    local ok, e = ssl.newcontext(params(CLIENT, { certificate = "/nonexistent/x.pem", key = "/nonexistent/x.key" }))
    assert.is_nil(ok)
    assert.matches("/nonexistent/x.pem", e, 1, true)
    assert.same(all(nil, "duplex.ssl: a server needs a certificate and a key"),
      all(ssl.newcontext{ mode = "server", protocol = "any" }))
    assert.has_error(function() ssl.wrap(socket.tcp(), 42) end, "bad argument #2 to 'wrap' (invalid context)")
  end)

  it("takes the face's client over: its getfd says -1 and its I/O \"closed\"", function()
    local c, a = facepair()
    local fd = c:getfd()
    local s = assert(ssl.wrap(c, params(CLIENT, { cafile = P.ca })))
    assert.equal(fd, s:getfd())
    assert.equal(-1, c:getfd())
    assert.same(all(nil, "closed", ""), all(c:receive(1)))
    assert.same(all(nil, "closed"), all(ssl.wrap(c, params(CLIENT, { cafile = P.ca }))))
    assert.same(all(nil, "duplex.ssl: wrap takes a connected tcp{client} of duplex.socket"),
      all(ssl.wrap(socket.tcp(), params(CLIENT, { cafile = P.ca }))))
    s:close()
    assert.same(all(nil, "closed", ""), all(a:receive(1)))  -- the descriptor closed with s
  end)

  it("closes once: close again says nothing, I/O then says \"closed\"", function()
    local c = facepair()
    local s = assert(ssl.wrap(c, params(CLIENT, { cafile = P.ca })))
    assert.same(all(), all(s:close()))
    assert.same(all(), all(s:close()))
    assert.same(all(false, "closed"), all(s:dohandshake()))
    assert.same(all(nil, "closed", ""), all(s:receive("*l")))
    assert.same(all(nil, "closed", 0), all(s:send("x")))
    assert.equal(-1, s:getfd())
    assert.is_false(s:dirty())
    assert.equal("nothing", s:want())
  end)
end)

describe("a duplex.ssl client against openssl s_server #nomemcheck", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("with no verify parameter verifies as duplex does: chain and name, and reads the page", function()
    local proc, port = www("server")
    local s = dial(port, params(CLIENT, { cafile = P.ca }))
    assert.same(all(true), all(s:dohandshake()))
    assert.same(all(true), all(s:getpeerverification()))
    assert.equal("TLSv1.3", s:info("protocol"))
    local info = s:info()
    assert.same({ "TLSv1.3", true }, { info.protocol, type(info.cipher) == "string" })
    local cert = assert(s:getpeercertificate())
    assert.same({ { oid = "2.5.4.3", name = "commonName", value = "server" } }, cert:subject())
    assert.same({ { oid = "2.5.4.3", name = "commonName", value = "duplex test CA" } }, cert:issuer())
    assert.matches("^%a%a%a [ %d]%d %d%d:%d%d:%d%d %d%d%d%d GMT$", cert:notafter())
    assert.same({ ["2.5.29.17"] = { name = "X509v3 Subject Alternative Name",
      dNSName = { "localhost" }, iPAddress = { "127.0.0.1", "::1" } } }, cert:extensions())
    assert.same(all(nil), all(s:getpeercertificate(2)))
    assert.same(all(18), all(s:send("GET / HTTP/1.0\r\n\r\n")))
    assert.same(all("HTTP/1.0 200 ok"), all(s:receive("*l")))
    local rest = s:receive("*a")
    assert.matches("s_server .*%-www", rest)
    s:close()
    assert.same(all(true, "exit", 0), all(proc:wait(10)))
  end)

  it("with no verify parameter refuses a certificate for another name: LuaSec's words, duplex's reason", function()
    local _, port = www("wronghost")
    local s = dial(port, params(CLIENT, { cafile = P.ca }))
    assert.same(all(false, "certificate verify failed",
      "hostname mismatch: the certificate is not for localhost"), all(s:dohandshake()))
    assert.same(all(false, "certificate verify failed",
      "hostname mismatch: the certificate is not for localhost"), all(s:dohandshake()))
    assert.same(all(nil, "closed", ""), all(s:receive("*l")))
  end)

  it("with no verify parameter and no cafile checks against the system's store", function()
    local _, port = www("server")
    local s = dial(port, params(CLIENT))
    assert.same(all(false, "certificate verify failed", "unable to get local issuer certificate"),
      all(s:dohandshake()))
  end)

  it("honours verify = \"none\": any certificate goes, and says it was not verified", function()
    local _, port = www("selfsigned")
    local s = dial(port, params(CLIENT, { verify = "none" }))
    assert.same(all(true), all(s:dohandshake()))
    assert.same(all(false, "the peer was not verified (verify = \"none\")"), all(s:getpeerverification()))
    assert.same(all(18), all(s:send("GET / HTTP/1.0\r\n\r\n")))
    assert.same(all("HTTP/1.0 200 ok"), all(s:receive("*l")))
    -- flags without "peer" check nothing either, as in OpenSSL
    local _, port2 = www("selfsigned")
    local s2 = dial(port2, params(CLIENT, { verify = { "fail_if_no_peer_cert" } }))
    assert.same(all(true), all(s2:dohandshake()))
  end)

  it("honours verify = \"peer\" as LuaSec: the chain is checked, not the name", function()
    local _, port = www("wronghost")
    local s = dial(port, params(CLIENT, { cafile = P.ca, verify = "peer" }))
    assert.same(all(true), all(s:dohandshake()))
    local _, port2 = www("selfsigned")
    local s2 = dial(port2, params(CLIENT, { cafile = P.ca, verify = { "peer", "fail_if_no_peer_cert" } }))
    assert.same(all(false, "certificate verify failed", "self-signed certificate"), all(s2:dohandshake()))
  end)

  it("sends the name given to sni() and checks it", function()
    local proc, port = s_server(("-naccept 1 -www -cert %s -key %s -servername localhost -cert2 %s -key2 %s"):format(
      sh(P.wronghost.crt), sh(P.wronghost.key), sh(P.server.crt), sh(P.server.key)))
    local s = dial(port, params(CLIENT, { cafile = P.ca }), "127.0.0.1")
    s:sni("localhost")
    assert.same(all(true), all(s:dohandshake()))
    assert.equal("server", s:getpeercertificate():subject()[1].value)
    s:close()
    assert.same(all(true, "exit", 0), all(proc:wait(10)))
  end)

  it("at timeout 0 says \"wantread\" until select finds the reply (copas's loop)", function()
    local _, port = www("server")
    local s = dial(port, params(CLIENT, { cafile = P.ca }))
    -- (a fast peer may have answered before the first call reads: then
    -- that call ends it; tlspair below makes the wait certain)
    local res, wants = handshake_all({ s })
    assert.same({ all(true) }, res)
    assert.equal(0, wants.wantwrite)
    assert.equal("nothing", s:want())
    assert.same(all(nil, "wantread", ""), all(s:receive("*l")))   -- nothing asked yet
    assert.equal("read", s:want())
  end)

  it("says \"wantread\" when a blocking timeout runs out in the handshake, as LuaSec", function()
    local srv = assert(socket.bind("127.0.0.1", 0))      -- a peer that never answers
    defer(function() srv:close() end)
    local _, port = srv:getsockname()
    local s = dial(port, params(CLIENT, { cafile = P.ca }), "127.0.0.1")
    s:settimeout(0.2)
    local a = assert(srv:accept())
    defer(function() a:close() end)
    local t0 = duplex.now()
    assert.same(all(false, "wantread"), all(s:dohandshake()))
    assert.is_true(duplex.now() - t0 >= 0.19)
  end)
end)

describe("a duplex.ssl server #nomemcheck", function()
  after_each(run_cleanups)
  helpers.track_fds()

  local function s_client(port, line, extra)
    return peer(pki.spawn("sh -c " .. sh(("printf '%s\\n' | openssl s_client -connect 127.0.0.1:%d %s -ign_eof"):format(
      line, port, extra))))
  end

  it("serves openssl s_client, which verifies it", function()
    local srv = assert(socket.bind("127.0.0.1", 0))
    defer(function() srv:close() end)
    local _, port = srv:getsockname()
    local proc = s_client(port, "ping",
      ("-servername localhost -verify_return_error -verify_hostname localhost -CAfile %s -brief"):format(sh(P.ca)))
    srv:settimeout(10)
    local a = assert(srv:accept())
    local s = assert(ssl.wrap(a, SERVER()))
    s:settimeout(5)
    assert.same(all(true), all(s:dohandshake()))
    assert.equal("localhost", s:getsniname())
    assert.same(all(nil), all(s:getpeercertificate()))       -- no client certificate asked
    assert.same(all("ping"), all(s:receive()))
    assert.same(all(5), all(s:send("pong\n")))
    s:close()
    assert.same(all(true, "exit", 0), all(proc:wait(10)))
    assert.matches("Verification: OK", proc:output(), 1, true)
    assert.matches("\npong\n", proc:output(), 1, true)
  end)

  it("requires a client certificate with verify = { \"peer\", \"fail_if_no_peer_cert\" }", function()
    local srv = assert(socket.bind("127.0.0.1", 0))
    defer(function() srv:close() end)
    local _, port = srv:getsockname()
    local proc = s_client(port, "ping", ("-CAfile %s -brief"):format(sh(P.ca)))
    srv:settimeout(10)
    local a = assert(srv:accept())
    local s = assert(ssl.wrap(a, SERVER{ cafile = P.ca, verify = { "peer", "fail_if_no_peer_cert" } }))
    s:settimeout(5)
    assert.same(all(false, "peer did not return a certificate"), all(s:dohandshake()))
    proc:wait(10)
  end)

  it("and its duplex.ssl client handshake at timeout 0, with client certificates both ways", function()
    local cs, ss, res, wants = tlspair(
      params(CLIENT, { cafile = P.ca, certificate = P.client.crt, key = P.client.key }),
      SERVER{ cafile = P.ca, verify = { "peer", "fail_if_no_peer_cert" } })
    assert.same({ all(true), all(true) }, res)
    assert.is_true(wants.wantread >= 2)
    assert.equal("client", ss:getpeercertificate():subject()[1].value)
    assert.equal("server", cs:getpeercertificate():subject()[1].value)
    -- LuaSocket's receive on TLS: a partial line is handed over and consumed
    assert.same(all(4), all(cs:send("abc\r")))
    assert.is_true(helpers.wait_until(function() return ss:dirty() or #socket.select({ ss }, nil, 0) > 0 end, 5))
    assert.same(all(nil, "wantread", "abc"), all(ss:receive("*l")))
    assert.same(all(8), all(cs:send("def\nxyz\n")))
    socket.select({ ss }, nil, 5)
    assert.same(all("def"), all(ss:receive("*l")))
    assert.is_true(ss:dirty())
    assert.same(all("xyz"), all(ss:receive()))
    assert.same(all(nil, "wantread", "pre"), all(ss:receive(10, "pre")))
    local r, s_, age = cs:getstats()
    assert.same({ 0, 12 }, { r, s_ })
    assert.is_true(age >= 0)
  end)

  it("says \"wantwrite\" at timeout 0 when the peer does not read", function()
    local cs, ss, res = tlspair(params(CLIENT, { cafile = P.ca }), SERVER())
    assert.same({ all(true), all(true) }, res)
    local data = ("x"):rep(16 * 1024 * 1024)
    local n, e, last = cs:send(data)
    assert.same({ nil, "wantwrite" }, { n, e })
    assert.is_true(last > 0 and last < #data)
    assert.equal("write", cs:want())
    assert.same(all({}, {}, "timeout"), all(socket.select(nil, { cs }, 0.05)))
    -- the server reads a while: the client may go on from last + 1
    ss:settimeout(5)
    local got = #ss:receive(last)
    assert.equal(last, got)
  end)

  it("picks the context for the name a client asks for (sni), and refuses others when strict", function()
    local other = assert(ssl.newcontext(SERVER{ certificate = P.wronghost.crt, key = P.wronghost.key }))
    local names = { ["not-localhost.example"] = other }
    local cs, ss, res = tlspair(params(CLIENT, { cafile = P.ca }), SERVER(), function(c, s)
      c:sni("not-localhost.example")
      s:sni(names, true)
    end)
    assert.same({ all(true), all(true) }, res)
    assert.equal("wronghost", cs:getpeercertificate():subject()[1].value)
    assert.equal("not-localhost.example", ss:getsniname())
    -- a name the server does not know
    local _, _, res2 = tlspair(params(CLIENT, { cafile = P.ca }), SERVER(), function(c, s)
      c:sni("localhost")
      s:sni(names, true)
    end)
    assert.same({ all(false, "tlsv1 unrecognized name"), all(false, "unrecognized name") }, res2)
    -- not strict: the server's own context
    local cs3, _, res3 = tlspair(params(CLIENT, { cafile = P.ca }), SERVER(), function(c, s)
      c:sni("localhost")
      s:sni(names)
    end)
    assert.same({ all(true), all(true) }, res3)
    assert.equal("server", cs3:getpeercertificate():subject()[1].value)
  end)

  it("waits by yielding inside duplex.run: a server task and a client task", function()
    local out = duplex.run(function()
      local srv = assert(socket.bind("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local t = duplex.spawn(function()
        local a = assert(srv:accept())
        local s = assert(ssl.wrap(a, SERVER()))
        s:settimeout(5)
        assert(s:dohandshake())
        local line = s:receive()
        s:send(line:upper() .. "\n")
        s:close()
        srv:close()
      end)
      local c = assert(socket.tcp())
      assert(c:connect("localhost", port))
      local s = assert(ssl.wrap(c, params(CLIENT, { cafile = P.ca })))
      s:settimeout(5)
      local r = { all(s:dohandshake()) }
      s:send("hello over tls\n")
      r[2] = all(s:receive())
      r[3] = all(s:receive())
      s:close()
      t:join(5)
      return r
    end)
    assert.same({ all(true), all("HELLO OVER TLS"), all(nil, "closed", "") }, out)
  end)
end)

describe("LuaSec's ssl.https on the faces #nomemcheck", function()
  if not has_https then
    it("needs lua-socket and lua-sec's Lua files", function() pending("ssl/https.lua missing") end)
    return
  end
  after_each(run_cleanups)
  helpers.track_fds()

  local function both(name, fn)
    it(name, fn)
    it(name .. " (inside duplex.run) #yields_in_pcall", function() duplex.run(fn) end)
  end

  both("GETs a page: verify = \"none\" as ssl.https asks by default", function()
    local proc, port = www("selfsigned")
    local body, code, headers, status = https.request(("https://localhost:%d/"):format(port))
    assert.equal(200, code)
    assert.equal("HTTP/1.0 200 ok", status)
    assert.equal("text/html", headers["content-type"])
    assert.matches("s_server .*%-www", body)
    assert.same(all(true, "exit", 0), all(proc:wait(10)))
  end)

  both("honours verify = \"peer\" with a cafile, and fails without one", function()
    local _, port = www("server")
    local t = {}
    local r, code = https.request{ url = ("https://localhost:%d/"):format(port), verify = "peer",
      cafile = P.ca, sink = require("ltn12").sink.table(t) }
    assert.same({ 1, 200 }, { r, code })
    assert.matches("s_server .*%-www", table.concat(t))
    local _, port2 = www("server")
    assert.same(all(nil, "certificate verify failed", nil, nil),
      all(https.request{ url = ("https://localhost:%d/"):format(port2), verify = "peer" }))
  end)
end)

describe("copas 4 on the faces, TLS both ways #nomemcheck", function()
  local src = os.getenv("DUPLEX_COPAS_SRC")
  if not (has_luasocket and src and findfile("coxpcall")
          and io.open(src .. "/src/copas.lua")) then
    it("needs DUPLEX_COPAS_SRC (a copy of lunarmodules/copas) and timerwheel", function()
      pending("DUPLEX_COPAS_SRC not set")
    end)
    return
  end
  after_each(run_cleanups)
  helpers.track_fds()

  it("serves and dials TLS echo clients with copas.handler and copas.wrap", function()
    local saved = package.path
    local wheel = (os.getenv("DUPLEX_TIMERWHEEL_SRC") or src .. "/../timerwheel") .. "/src/"
    package.path = src .. "/src/?.lua;" .. wheel .. "?.lua;" .. wheel .. "?/init.lua;" .. package.path
    defer(function() package.path = saved end)
    package.loaded.copas = nil
    local http = package.loaded["socket.http"]     -- (copas wants to come first)
    package.loaded["socket.http"] = nil
    local copas = require "copas"
    package.loaded["socket.http"] = http
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    copas.addserver(server, copas.handler(function(skt)
      while true do
        local line = skt:receive()
        if not line then return end
        skt:send(line:upper() .. "\n")
      end
    end, SERVER()))
    local N, done, answers = 5, 0, {}
    for i = 1, N do
      copas.addthread(function()
        local skt = copas.wrap(socket.tcp(), params(CLIENT, { cafile = P.ca }))
        assert(skt:connect("localhost", port))
        skt:send(("client %d\n"):format(i))
        local line, e = skt:receive()
        answers[#answers + 1] = line or tostring(e)
        skt:close()
        done = done + 1
        if done == N then copas.removeserver(server) end
      end)
    end
    copas.loop()
    package.loaded.copas = nil
    assert.equal(N, done)
    table.sort(answers)
    assert.same({ "CLIENT 1", "CLIENT 2", "CLIENT 3", "CLIENT 4", "CLIENT 5" }, answers)
  end)
end)

describe("duplex's TLS, as duplex.ssl uses it #nomemcheck", function()
  after_each(run_cleanups)
  helpers.track_fds()

  it("handshake and starttls at timeout 0 say which way TLS waits", function()
    local srv = assert(duplex.listen("127.0.0.1", 0))          -- a peer that never answers
    defer(function() srv:close() end)
    local _, port = srv:getsockname()
    local c = assert(duplex.connect("127.0.0.1", port))
    defer(function() c:close() end)
    local p = assert(srv:accept())
    defer(function() p:close() end)
    local why = ("tls handshake 127.0.0.1:%d: Resource temporarily unavailable"):format(port)
    assert.same(all(nil, why, "EAGAIN", "read"), all(c:starttls(pki.client_opts(), 0)))
    assert.same(all(nil, why, "EAGAIN", "read"), all(c:handshake(0)))
    local t = all(c:handshake(0.05))                            -- a timeout says only that
    assert.same(all(nil, ("tls handshake 127.0.0.1:%d: Connection timed out"):format(port), "ETIMEDOUT"), t)
  end)

  it("starttls(ctx, timeout, ahead) gives TLS the bytes the program read first", function()
    local out = duplex.run(function()
      local srv = assert(duplex.listen("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local t = duplex.spawn(function()
        local p = assert(srv:accept(5))
        local head = assert(p:read(5))                          -- the ClientHello's record header
        local r = { all(p:starttls(pki.server_opts(), 5, head)) }
        r[2] = all(p:read("l"))
        p:close()
        srv:close()
        return r, head:byte(1)
      end)
      local c = assert(duplex.connect("localhost", port, { tls = pki.client_opts(), timeout = 5 }))
      c:write("hello\n")
      local _, r, first = t:join(10)
      c:close()
      return { r[1][1] ~= nil, r[2], first }
    end)
    assert.same({ true, all("hello"), 22 }, out)
    assert.has_error(function()
      local c, p, srv = helpers.pair()
      defer(function() helpers.close(c, p, srv) end)
      p:starttls(pki.server_opts(), 1, 42)
    end, "bad argument #3 to 'starttls' (string expected, got number)")
  end)

  it("checkname = false checks the chain and not the name", function()
    local proc, port = www("wronghost")
    local r = duplex.run(function()
      local c, msg, code = duplex.connect("localhost", port, { tls = pki.client_opts{ checkname = false }, timeout = 5 })
      if c then c:close() end
      return { c ~= nil, msg, code }
    end)
    assert.same({ true }, r)
    proc:close()
    local _, port2 = www("other")                               -- another CA: the chain fails
    local r2 = duplex.run(function()
      return all(duplex.connect("localhost", port2, { tls = pki.client_opts{ checkname = false }, timeout = 5 }))
    end)
    assert.same(all(nil, ("tls handshake localhost:%d: unable to get local issuer certificate"):format(port2), "ECERT"), r2)
  end)
end)
