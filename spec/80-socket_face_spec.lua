-- spec/80-socket_face_spec.lua: duplex.socket, LuaSocket's socket.core on
-- duplex. Real loopback sockets; whole results asserted. Then LuaSocket's
-- own Lua modules as Debian ships them (lua-socket: socket.lua,
-- socket/http.lua, ltn12.lua, socket/smtp.lua) and Debian's lua-copas,
-- unchanged, on the face, against python3 servers, inside and outside
-- duplex.run. Pending where those packages or python3 are missing.

local duplex = require "duplex"
local core = require "duplex.core"
local helpers = require "spec.helpers"

local has_python = helpers.execute("command -v python3 >/dev/null 2>&1") == true
-- package.searchpath, which PUC Lua 5.1 lacks.
local function searchpath(name, path)
  name = name:gsub("%.", "/")
  for template in path:gmatch("[^;]+") do
    local f = io.open((template:gsub("%?", name)), "r")
    if f then f:close(); return template end
  end
end
local function findfile(name) return searchpath(name, package.path) ~= nil end

-- LuaSocket's Lua modules on the face: whatever this process had loaded
-- of LuaSocket goes (busted's insulation puts it back after this file).
for _, name in ipairs({ "socket", "socket.core", "socket.http", "socket.url", "socket.headers",
                        "socket.smtp", "socket.tp", "ltn12", "mime", "copas" }) do
  package.loaded[name] = nil
end
local face = require "duplex.socket"
-- install() ignores SIGPIPE as LuaSocket does (through onsignal): put it back.
teardown(function() duplex.onsignal("PIPE", nil) end)
local has_luasocket = findfile("socket") and findfile("ltn12")
local socket = has_luasocket and face.install() or face
-- Debian's lua-copas (1.2.0) and lua-coxpcall are installed for Lua 5.1
-- to 5.3: plain Lua, which 5.4 loads too.
package.path = package.path .. ";/usr/share/lua/5.1/?.lua;/usr/share/lua/5.3/?.lua"
local has_copas = has_luasocket and findfile("copas") and findfile("coxpcall")
local copas = has_copas and require "copas"      -- before socket.http, as it asks
local http = has_luasocket and require "socket.http"
local ltn12 = has_luasocket and require "ltn12"
local smtp = has_luasocket and findfile("mime") and require "socket.smtp"

-- The lookup pool's descriptors, made by the first lookup inside a task
-- and kept, are made now: no test counts them as its leak.
duplex.run(function() duplex.resolve("localhost") end)

-- Cleanups, in reverse order, after each test (busted keeps one finally
-- per test; the tasks of duplex.run are coroutines it does not know).
local cleanups
local function defer(fn) cleanups[#cleanups + 1] = fn end

local function case(name, fn)
  it(name, function()
    local list = {}
    cleanups = list
    finally(function()
      cleanups = nil
      for i = #list, 1, -1 do list[i]() end
    end)
    fn()
  end)
end

-- A listening face server on 127.0.0.1 and a client connected to it, and
-- the server's side of the connection.
local function facepair()
  local srv = assert(face.tcp())
  assert.equal(1, srv:bind("127.0.0.1", 0))
  assert.equal(1, srv:listen())
  local ip, port = srv:getsockname()
  local c = assert(face.connect(ip, port))
  local a = assert(srv:accept())
  defer(function() c:close(); a:close(); srv:close() end)
  return c, a, srv, port
end

-- Each test twice: as it is, and as the first task of duplex.run; tags
-- for the second (LuaSocket's modules wait inside protect's pcall, which
-- PUC Lua 5.1 cannot yield across: #yields_in_pcall).
local function both(name, fn, tags)
  case(name, fn)
  case(name .. " (inside duplex.run)" .. (tags or ""), function() duplex.run(fn) end)
end

describe("duplex.socket's shape", function()
  helpers.track_fds()

  case("names its objects and classes as LuaSocket does", function()
    local t, u = face.tcp(), face.udp()
    assert.matches("^tcp{master}: 0x%x+$", tostring(t))
    assert.matches("^udp{unconnected}: 0x%x+$", tostring(u))
    assert.equal("tcp{master}", t.class)
    assert.equal("udp{unconnected}", u.class)
    t:close(); u:close()
  end)

  case("has every method of a family on each of its objects", function()
    local tcpm = { "accept", "bind", "close", "connect", "dirty", "getfamily", "getfd",
      "getoption", "getpeername", "getsockname", "getstats", "setstats", "listen", "receive",
      "send", "setfd", "setoption", "setpeername", "setsockname", "settimeout", "gettimeout",
      "shutdown" }
    local udpm = { "close", "dirty", "getfamily", "getfd", "getoption", "getpeername",
      "getsockname", "receive", "receivefrom", "send", "sendto", "setfd", "setoption",
      "setpeername", "setsockname", "settimeout", "gettimeout" }
    local c, a, srv = facepair()
    for _, o in ipairs({ face.tcp(), c, a, srv }) do
      for _, m in ipairs(tcpm) do assert.is_function(o[m], o.class .. ":" .. m) end
    end
    local u1, u2 = face.udp4(), face.udp4()
    assert.equal(1, u2:setpeername("127.0.0.1", 9))
    assert.equal("udp{connected}", u2.class)
    for _, o in ipairs({ u1, u2 }) do
      for _, m in ipairs(udpm) do assert.is_function(o[m], o.class .. ":" .. m) end
    end
    u1:close(); u2:close()
  end)

  case("raises LuaSocket's argument error for a call on the wrong class", function()
    local t = face.tcp()
    assert.has_error(function() t:accept() end, "calling 'accept' on bad self (tcp{server} expected)")
    assert.has_error(function() t:send("x") end, "calling 'send' on bad self (tcp{client} expected)")
    local ok, e = pcall(t.receive, t)
    assert.is_false(ok)
    assert.matches("bad argument #1 to '.*' %(tcp{client} expected%)", e)
    t:close()
  end)

  case("goes from master to server (bind, listen) and to client (connect)", function()
    local m = face.tcp()
    assert.equal(-1, m:getfd())                      -- LuaSocket 3: no descriptor yet
    assert.equal(1, m:bind("127.0.0.1", 0))
    assert.equal("tcp{master}", m.class)
    assert.is_true(m:getfd() >= 0)
    assert.equal(1, m:listen(8))
    assert.equal("tcp{server}", m.class)
    local ip, port, fam = m:getsockname()
    assert.same({ "127.0.0.1", "inet" }, { ip, fam })
    local c = face.tcp4()
    assert.is_true(c:getfd() >= 0)                   -- tcp4(): a descriptor at once
    assert.equal("inet4", c:getfamily())
    assert.equal(1, c:connect("127.0.0.1", port))
    assert.equal("tcp{client}", c.class)
    local a = assert(m:accept())
    assert.equal("tcp{client}", a.class)
    assert.same({ "127.0.0.1", port, "inet" }, { c:getpeername() })
    assert.equal(1, c:close())
    assert.equal(1, c:close())                       -- idempotent
    assert.equal(-1, c:getfd())
    a:close(); m:close()
  end)

  case("reports the real descriptor limit as _SETSIZE", function()
    assert.equal(core.fdlimit(), face._SETSIZE)
    assert.is_true(face._SETSIZE > 0)
  end)
end)

describe("duplex.socket's TCP", function()
  helpers.track_fds()

  both("receives lines without any CR, and a partial line at close", function()
    local c, a = facepair()
    assert.equal(15, c:send("one\r\ntw\ro\nthree"))
    assert.equal("one", a:receive())
    assert.equal("two", a:receive("*l"))
    c:close()
    assert.same({ nil, "closed", "three" }, { a:receive("*l") })
    assert.same({ nil, "closed", "" }, { a:receive("*l") })
  end)

  case("waits for a line that comes a byte at a time, drops its CRs, counts its bytes", function()
    duplex.run(function()
      local c, a = facepair()
      local text = "a\rb\r\r\nnext\n"
      duplex.spawn(function()
        for i = 1, #text do
          assert.equal(i, c:send(text, i, i))     -- the last index sent
          duplex.sleep(0)                      -- the reader waits between bytes
        end
      end)
      assert.equal("ab", a:receive())
      assert.equal(6, a:getstats())            -- every byte taken: CRs and LF too
      assert.equal("next", a:receive("*l"))
      assert.equal(11, a:getstats())
    end)
  end)

  both("returns *a at close, then nil, 'closed'", function()
    local c, a = facepair()
    c:send("all of it")
    c:close()
    assert.equal("all of it", a:receive("*a"))
    assert.same({ nil, "closed", "" }, { a:receive("*a") })
  end)

  both("counts the prefix in a byte count", function()
    local c, a = facepair()
    c:send("7890")
    assert.equal("1234567890", a:receive(10, "123456"))
    assert.equal("87654321", a:receive(4, "87654321"))
    c:send("ab")
    assert.equal("xab", a:receive(3, "x"))
  end)

  both("hands over and consumes a partial result on timeout (copas's loop)", function()
    local c, a = facepair()
    a:settimeout(0)
    assert.same({ nil, "timeout", "" }, { a:receive() })
    c:send("hel")
    local part
    repeat
      local r, e, p = a:receive("*l", part)
      assert.is_nil(r)
      assert.equal("timeout", e)
      part = p
    until part == "hel"
    assert.is_false(a:dirty())
    c:send("lo\r\nnext\n")
    local line
    repeat line, _, part = a:receive("*l", part) until line
    assert.equal("hello", line)
    assert.is_true(a:dirty())                        -- "next\n" is buffered
    assert.equal("next", a:receive())
  end)

  both("sends data[i..j], returning the last index, or nil, err, last index sent", function()
    local c, a = facepair()
    assert.equal(5, c:send("0123456789", 3, 5))
    assert.equal(10, c:send("0123456789", -2))
    assert.equal(2, c:send("0123456789", 3, 2))     -- nothing: i - 1
    assert.equal("23489", a:receive(5))
    a:close()
    local big = string.rep("x", 4 * 1024 * 1024)
    local r, e, last
    repeat r, e, last = c:send(big) until not r
    assert.same({ nil, "closed" }, { r, e })
    assert.is_true(last >= 0 and last < #big)
  end)

  both("a whole send that cannot finish says nil, 'timeout' or 'closed', the last index sent, and counts it", function()
    local c, a = facepair()
    c:settimeout(0)
    local piece = string.rep("y", 256 * 1024)          -- sent whole (C's fast path)
    local total, r, e, last = 0, nil, nil, nil
    repeat
      r, e, last = c:send(piece)
      if r then total = total + r end
    until not r
    assert.same({ nil, "timeout" }, { r, e })
    assert.is_true(last >= 0 and last < #piece)
    total = total + last
    assert.equal(total, select(2, c:getstats()))
    a:settimeout(5)
    local got = 0
    while got < total do got = got + #assert(a:receive(math.min(65536, total - got))) end
    a:settimeout(0)
    assert.same({ total, { nil, "timeout", "" } }, { got, { a:receive(1) } })
    assert.equal(total, (a:getstats()))
    a:close()
    c:settimeout(nil)
    repeat r, e, last = c:send(piece) until not r
    assert.same({ nil, "closed" }, { r, e })
    assert.is_true(last >= 0 and last < #piece)
  end)

  both("times out a total deadline and a blocking one with LuaSocket's string", function()
    local c, a = facepair()
    a:settimeout(0.05, "t")
    assert.same({ nil, "timeout", "" }, { a:receive(1) })
    a:settimeout(-1, "t")
    a:settimeout(0.05)
    assert.same({ nil, "timeout", "" }, { a:receive("*a") })
    a:settimeout(nil)
    assert.same({ -1, -1 }, { a:gettimeout() })
    c:send("x")
    assert.equal("x", a:receive(1))
  end)

  both("says connection refused, address in use, unknown host, already connected", function()
    local c, a, srv, port = facepair()
    local probe = face.bind("127.0.0.1", 0)
    local _, free = probe:getsockname()
    probe:close()
    assert.same({ nil, "connection refused" }, { face.connect("127.0.0.1", free) })
    local t = face.tcp()
    t:setoption("reuseaddr", false)
    assert.same({ nil, "address already in use" }, { t:bind("127.0.0.1", port) })
    t:close()
    assert.same({ nil, "host or service not provided, or not known" },
                { face.connect("host.invalid", 80) })
    assert.same({ nil, "already connected" }, { c:connect("127.0.0.1", port) })
  end)

  both("connects without waiting at timeout 0: writable in select, then already connected", function()
    local _, _, srv, port = facepair()
    local t = face.tcp()
    t:settimeout(0)
    local ok, e = t:connect("127.0.0.1", port)
    assert.is_true(ok == 1 or e == "timeout")
    local _, w = face.select(nil, { t }, 5)
    assert.equal(t, w[1])
    assert.equal(1, w[t])
    if ok then
      assert.same({ nil, "already connected" }, { t:connect("127.0.0.1", port) })
    else
      local r2, e2 = t:connect("127.0.0.1", port)
      assert.is_true(r2 == 1 or e2 == "already connected")
    end
    local a = assert(srv:accept())
    assert.equal(2, t:send("hi"))
    assert.equal("hi", a:receive(2))
    t:close(); a:close()
  end)

  both("accepts with timeout 0: nil, 'timeout'", function()
    local _, _, srv = facepair()
    srv:settimeout(0)
    assert.same({ nil, "timeout" }, { srv:accept() })
  end)

  both("shuts down and counts bytes", function()
    local c, a = facepair()
    c:send("abc")
    assert.equal(1, c:shutdown("send"))
    assert.equal("abc", a:receive("*a"))
    local r, s, age = c:getstats()
    assert.same({ 0, 3 }, { r, s })
    assert.is_true(age >= 0)
    r, s = a:getstats()
    assert.same({ 3, 0 }, { r, s })
    assert.equal(1, a:setstats(10, 20, 0))
    r, s = a:getstats()
    assert.same({ 10, 20 }, { r, s })
  end)

  both("takes LuaSocket's option names", function()
    local c = facepair()
    assert.is_false(c:getoption("tcp-nodelay"))
    assert.equal(1, c:setoption("tcp-nodelay", true))
    assert.is_true(c:getoption("tcp-nodelay"))
    assert.equal(1, c:setoption("keepalive", true))
    assert.is_true(c:getoption("keepalive"))
    assert.equal(1, c:setoption("linger", { on = true, timeout = 3 }))
    assert.same({ on = true, timeout = 3 }, c:getoption("linger"))
    assert.equal(1, c:setoption("recv-buffer-size", 65536))
    assert.is_number(c:getoption("recv-buffer-size"))
    assert.is_nil(c:getoption("error"))
    local m = face.tcp()
    assert.equal(1, m:setoption("reuseaddr", true))
    assert.is_true(m:getoption("reuseaddr"))
    assert.has_error(function() m:setoption("nosuch", 1) end)
    m:close()
  end)
end)

describe("duplex.socket's select", function()
  helpers.track_fds()

  both("says nil, nil, 'timeout' as empty tables when nothing is ready", function()
    local c, a = facepair()
    local r, w, e = face.select({ a, c }, nil, 0.01)
    assert.same({ {}, {}, "timeout" }, { r, w, e })
    r, w, e = face.select(nil, nil, 0)
    assert.same({ {}, {}, "timeout" }, { r, w, e })
  end)

  both("gives arrays with the reverse index, buffered bytes as readable, closed sockets ignored", function()
    local c, a = facepair()
    c:send("x\ny\n")
    local r, w = face.select({ a }, { c }, 5)
    assert.same({ a, [a] = 1 }, r)
    assert.same({ c, [c] = 1 }, w)
    assert.equal("x", a:receive())
    r = face.select({ a }, nil, 0)                  -- "y\n" waits in a's buffer
    assert.same({ a, [a] = 1 }, r)
    local u = face.udp4()
    u:close()
    r, w = face.select({ u, a }, { u }, 0)
    assert.same({ a, [a] = 1 }, r)
    assert.same({}, w)
  end)

  case("raises for what is not a table", function()
    assert.has_error(function() face.select("wrong", 1, 0.1) end)
    assert.has_error(function() face.select({}, 1, 0.1) end)
  end)

  case("has no ceiling at 1,024 descriptors", function()
    local many = {}
    defer(function() for _, u in ipairs(many) do u:close() end end)
    for i = 1, 1100 do many[i] = assert(face.udp4()) end
    local c, a = facepair()
    assert.is_true(a:getfd() > 1024)
    many[#many + 1] = a
    c:send("z")
    local r, _, e = face.select(many, nil, 5)
    assert.is_nil(e)
    assert.same({ a, [a] = 1 }, r)
  end)

  case("yields inside duplex.run: other tasks run while it waits", function()
    local c, a = facepair()
    duplex.run(function()
      local me = helpers.current()
      local writer = duplex.spawn(function()
        helpers.until_waiting(me, "read")         -- select waits, through the scheduler
        c:send("go")
      end)
      local r, _, e = face.select({ a }, nil, 5)
      assert.is_nil(e)
      assert.equal(a, r[1])
      assert.is_true(writer:join(5))
      assert.equal("go", a:receive(2))
    end)
  end)
end)

describe("duplex.socket's other functions", function()
  helpers.track_fds()

  both("sleeps, and tells the wall clock", function()
    local t0 = face.gettime()
    assert.is_nil(face.sleep(0.01))
    assert.is_true(face.gettime() >= t0)
    assert.is_true(math.abs(face.gettime() - os.time()) <= 1)
  end)

  both("looks names up", function()
    local ip, res = face.dns.toip("localhost")
    assert.equal("127.0.0.1", ip)
    assert.equal("127.0.0.1", res.ip[1])
    local ai = face.dns.getaddrinfo("127.0.0.1")
    assert.same({ { family = "inet", addr = "127.0.0.1" } }, ai)
    assert.is_string(face.dns.gethostname())
    assert.same({ nil, "host not found" }, { face.dns.toip("host.invalid") })
  end)

  both("protects, tries and skips as LuaSocket", function()
    local closed = false
    local try = face.newtry(function() closed = true end)
    local f = face.protect(function(x) return try(x, "failed") end)
    assert.same({ nil, "failed" }, { f(nil) })
    assert.is_true(closed)
    assert.same({ 1, "failed" }, { f(1) })
    -- (where copas is loaded on 5.1 and LuaJIT, its own protect replaces
    -- LuaSocket's and names its position: the error ends with "plain")
    local ok, err = pcall(face.protect(function() error("plain", 0) end))
    assert.same({ false, "plain" }, { ok, (tostring(err):match("^[^\n]*"):match("plain$")) })
    assert.same({ "b", "c" }, { face.skip(1, "a", "b", "c") })
    assert.same({ nil, "x" }, { face.protect(function() face.try(nil, "x") end)() })
  end)

  if duplex.run and _VERSION ~= "Lua 5.1" then
    case("lets a protected function wait inside a task", function()
      local c, a = facepair()
      duplex.run(function()
        duplex.spawn(function() duplex.sleep(0); c:send("late\n") end)
        assert.same({ "late" }, { face.protect(function() return a:receive() end)() })
      end)
    end)
  end
end)

describe("duplex.socket's UDP", function()
  helpers.track_fds()

  both("sends to, receives from, connects and unconnects", function()
    local s, u = face.udp(), face.udp()
    defer(function() s:close(); u:close() end)
    assert.equal(1, s:setsockname("127.0.0.1", 0))
    local ip, port = s:getsockname()
    assert.equal(4, u:sendto("ping", ip, port))
    local data, from, fport = s:receivefrom()
    assert.equal("ping", data)
    assert.equal("127.0.0.1", from)
    assert.equal(5, s:sendto("pong!", from, fport))
    assert.equal("po", u:receive(2))                -- the rest of the datagram goes
    assert.equal(1, u:setpeername(ip, port))
    assert.equal("udp{connected}", u.class)
    assert.same({ "127.0.0.1", port, "inet" }, { u:getpeername() })
    local big = string.rep("d", 60000)
    assert.equal(60000, u:send(big))
    assert.equal(big, s:receive())                   -- whole, past LuaSocket's 8 KiB
    assert.equal(1, u:setpeername("*"))
    assert.equal("udp{unconnected}", u.class)
    s:settimeout(0)
    assert.same({ nil, "timeout" }, { s:receive() })
  end)
end)

-- --- LuaSocket's own modules, unchanged, on the face ---------------------------

local HTTP_SERVER = [[
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def body(self, code, data, extra=()):
        self.send_response(code)
        for k, v in extra: self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path.startswith("/big/"):
            n = int(self.path[5:])
            self.body(200, (b"0123456789abcdef" * (n // 16 + 1))[:n])
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"first,", b"second,", b"x" * 70000):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/redirect":
            self.body(302, b"", [("Location", "/big/5")])
        else:
            self.body(404, b"no")
    def do_POST(self):
        n = int(self.headers["Content-Length"])
        data = self.rfile.read(n)
        self.body(200, b"%d:%s" % (len(data), data[-8:]))
if len(sys.argv) > 2:          # TLS: certificate, key
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
else:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
]]

local SMTP_SINK = [[
import socketserver, sys
class H(socketserver.StreamRequestHandler):
    def handle(self):
        w = lambda s: self.wfile.write(s.encode() + b"\r\n")
        w("220 sink ESMTP")
        data, msg = False, []
        for line in self.rfile:
            l = line.decode("latin-1").rstrip("\r\n")
            if data:
                if l == ".":
                    data = False
                    with open(sys.argv[1], "a") as out: out.write("\n".join(msg) + "\n.\n")
                    msg = []
                    w("250 queued")
                else:
                    msg.append(l)
                continue
            cmd = l[:4].upper()
            if cmd in ("HELO", "EHLO"): w("250 sink")
            elif cmd == "DATA": data = True; w("354 go on")
            elif cmd == "QUIT": w("221 bye"); return
            else: w("250 ok")
socketserver.ThreadingTCPServer.allow_reuse_address = True
server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
]]

local function python_server(script, ...)
  local dir = helpers.mktemp_dir("face")
  local path = dir .. "/server.py"
  helpers.spit(path, script)
  local args = {}
  for i = 1, select("#", ...) do args[i] = helpers.shquote((select(i, ...))) end
  local proc = helpers.spawn_process("python3 " .. path .. " " .. table.concat(args, " "))
  defer(function() proc:close(); os.execute("rm -rf " .. helpers.shquote(dir)) end)
  local port = tonumber(proc:read("l"))
  assert(port, "the python3 server did not start")
  return port, dir
end

describe("LuaSocket's socket.http on the face #nomemcheck", function()
  if not (has_luasocket and has_python and http) then
    it("needs lua-socket and python3", function() pending("lua-socket or python3 missing") end)
    return
  end

  both("GETs, follows a redirect, reads a chunked body and POSTs", function()
    local port = python_server(HTTP_SERVER)
    local base = "http://127.0.0.1:" .. port
    local body, code = http.request(base .. "/big/3145728")
    assert.equal(200, code)
    assert.equal(3145728, #body)
    assert.equal("0123456789abcdef", body:sub(1, 16))
    body, code = http.request(base .. "/redirect")
    assert.same({ "01234", 200 }, { body, code })
    body, code = http.request(base .. "/chunked")
    assert.same({ "first,second," .. string.rep("x", 70000), 200 }, { body, code })
    local post = string.rep("p", 2 * 1024 * 1024) .. "the end."
    body, code = http.request(base .. "/post", post)
    assert.same({ #post - 0 .. ":the end.", 200 }, { body, code })
    assert.same({ nil, "connection refused" }, { http.request("http://127.0.0.1:1/") })
  end, " #yields_in_pcall")

  both("pumps through ltn12 sources and sinks", function()
    local port = python_server(HTTP_SERVER)
    local t = {}
    local ok, code = http.request{ url = "http://127.0.0.1:" .. port .. "/big/100000",
                                   sink = ltn12.sink.table(t) }
    assert.same({ 1, 200 }, { ok, code })
    assert.equal(100000, #table.concat(t))
    local c, a = facepair()
    local sent = string.rep("0123456789", 6000)   -- fits in the socket buffers: one task
    assert.equal(1, ltn12.pump.all(ltn12.source.string(sent), socket.sink("close-when-done", c)))
    local got = {}
    assert.equal(1, ltn12.pump.all(socket.source("until-closed", a), (ltn12.sink.table(got))))
    assert.equal(sent, table.concat(got))
  end, " #yields_in_pcall")
end)

describe("LuaSec's ssl.https over the face #nomemcheck", function()
  local has_luasec = has_luasocket and has_python and findfile("ssl")
    and searchpath("ssl", package.cpath) ~= nil
  if not has_luasec then
    it("needs lua-sec and python3", function() pending("lua-sec or python3 missing") end)
    return
  end

  -- LuaSec takes the face's descriptor over (getfd, setfd(-1)) and does
  -- its own I/O on it: blocking, so outside duplex.run.
  case("GETs a body over TLS", function()
    local P = require("spec.tls_pki").get()
    local port = python_server(HTTP_SERVER, P.server.crt, P.server.key)
    local https = require "ssl.https"
    local body, code = https.request("https://127.0.0.1:" .. port .. "/big/200000")
    assert.equal(200, code)
    assert.equal(200000, #body)
    assert.equal("0123456789abcdef", body:sub(1, 16))
  end)
end)

describe("LuaSocket's socket.smtp on the face #nomemcheck", function()
  if not (smtp and has_python) then
    it("needs lua-socket and python3", function() pending("lua-socket or python3 missing") end)
    return
  end

  both("sends a message to an SMTP sink", function()
    local dir = helpers.mktemp_dir("smtp")
    defer(function() os.execute("rm -rf " .. helpers.shquote(dir)) end)
    local box = dir .. "/box"
    local port = python_server(SMTP_SINK, box)
    local ok, e = smtp.send{
      from = "<a@example.org>", rcpt = { "<b@example.org>" },
      server = "127.0.0.1", port = port,
      source = smtp.message{ headers = { subject = "face" }, body = "line one\r\nline two" },
    }
    assert.same({ 1, nil }, { ok, e })
    local got = helpers.slurp(box)
    assert.matches("Subject: face", got, 1, true)
    assert.matches("line one\nline two\n.\n$", got)
  end, " #yields_in_pcall")
end)

describe("Debian's lua-copas on the face #nomemcheck", function()
  if not has_copas then
    it("needs lua-copas and lua-coxpcall", function() pending("lua-copas missing") end)
    return
  end

  both("serves many clients at once", function()
    local N = 50
    local server = assert(socket.bind("127.0.0.1", 0, 64))   -- a queue for them all:
    -- copas 1.2.0 takes a connect still in progress ("Operation already in
    -- progress", as LuaSocket says it) for a failure
    local _, port = server:getsockname()
    copas.addserver(server, function(skt)
      skt = copas.wrap(skt)
      while true do
        local line = skt:receive()
        if not line then return end
        skt:send(line:upper() .. "\n")
      end
    end)
    local done, answers = 0, {}
    for i = 1, N do
      copas.addthread(function()
        local skt = socket.tcp()
        assert(copas.connect(skt, "127.0.0.1", port))
        local c = copas.wrap(skt)
        for k = 1, 3 do
          c:send(("client %d line %d\n"):format(i, k))
          local line = assert(c:receive())   -- before the index: receive yields
          answers[#answers + 1] = line
        end
        skt:close()
        done = done + 1
      end)
    end
    local deadline = duplex.now() + 20
    while done < N and duplex.now() < deadline do copas.step(0.1) end
    server:close()
    assert.equal(N, done)
    assert.equal(3 * N, #answers)
    for _, line in ipairs(answers) do assert.matches("^CLIENT %d+ LINE %d$", line) end
  end, " #yields_in_pcall")
end)
