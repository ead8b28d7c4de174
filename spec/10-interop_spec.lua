-- spec/10-interop_spec.lua: duplex talks to peers not written in Lua, in
-- both roles: python3 and nc clients of a duplex server, and duplex clients
-- of python3 servers, over TCP (IPv4, IPv6) and Unix domain sockets
-- (paths and the abstract namespace), half-close included. Peers run as
-- child processes and report what they received as hex, byte for byte.

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

local HAS_V6 = helpers.execute(
  [[python3 -c "import socket; socket.socket(socket.AF_INET6).bind(('::1', 0))" 2>/dev/null]]
) == true

local function all(...) return pack(...) end

local function writefile(content)
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:write(content)
  f:close()
  return name
end

local function unhex(s)
  return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

local PY_PROLOGUE = [[
import os, signal, socket, sys
signal.alarm(60)

def recv_all(s):
    parts = []
    while True:
        b = s.recv(65536)
        if not b:
            return b"".join(parts)
        parts.append(b)

def report(tag, data):
    print(tag, data.hex(), flush=True)
]]

-- A python3 child; py:close() (`local py = own(python(code, args...))`)
-- kills it by pid if it outlives the test and removes its script.
local function python(code, ...)
  local script = writefile(PY_PROLOGUE .. code)
  local args = {}
  for i = 1, select("#", ...) do args[i] = helpers.shquote(select(i, ...)) end
  local proc = helpers.spawn_process("python3 -u " .. script .. " "
    .. table.concat(args, " ") .. " 2>&1")
  local close = proc.close
  function proc:close()
    close(self)
    os.remove(script)
  end
  return proc
end

-- Reads the child's "TAG hex" lines until "END" (bounded): a list of
-- { tag, bytes }. Anything else (a python traceback) fails the test.
local function reports(py)
  local out = {}
  for _ = 1, 1000 do
    local line = py:read("l")
    if line == nil or line == "END" then return out end
    local tag, hex = line:match("^(%S+) (%x*)$")
    if not tag then
      error("unexpected output from the peer: " .. line .. "\n" .. (py:read("a") or ""))
    end
    out[#out + 1] = { tag, unhex(hex) }
  end
  error("too much output")
end

describe("interoperation", function()
  helpers.track_fds()

  describe("a duplex server", function()
    it("echoes lines to a python client", function()
      local own = helpers.scope(); finally(own.close)
      local srv, port = own(helpers.server())
      local long = string.rep("0123456789abcdef", 6250)      -- 100000 bytes
      -- lines as hex arguments; "LONG" stands for long .. "\n" (too long for argv)
      local sent = { "hello\n", "with crlf\r\n", "\n", "\0binary\1\255\n", "LONG", "caf\195\169\n" }
      local hexes = {}
      for i, l in ipairs(sent) do
        hexes[i] = l == "LONG" and l or (l:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end))
      end
      local py = python([[
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
f = s.makefile("rb")
got = []        # reported at the end: nobody reads our stdout before that
for h in sys.argv[2:]:
    s.sendall(b"0123456789abcdef" * 6250 + b"\n" if h == "LONG" else bytes.fromhex(h))
    got.append(("echo", f.readline()))
s.sendall(b"last")                 # no newline: the final line
s.shutdown(socket.SHUT_WR)
got.append(("rest", f.read()))
f.close(); s.close()
for tag, data in got:
    report(tag, data)
print("END")
]], port, unpack(hexes))
      own(py)
      local c = own(assert(srv:accept(10)))
      c:settimeout(10)
      local n = 0
      for line in c:lines() do
        n = n + 1
        assert.is_true(n <= 100)
        assert.equal(c, c:write(line, "\n"))
      end
      c:write("bye ", n, "\n")
      assert.is_true(c:close())

      assert.same({
        { "echo", "hello\n" },
        { "echo", "with crlf\n" },          -- "l" drops the \r
        { "echo", "\n" },
        { "echo", "\0binary\1\255\n" },
        { "echo", long .. "\n" },
        { "echo", "caf\195\169\n" },
        { "rest", "last\nbye 7\n" },
      }, reports(py))
      assert.same(all(true, "exit", 0), all(py:wait(10)))
    end)

    it("reads the rest with read('a') after the python client's shutdown(SHUT_WR)", function()
      local own = helpers.scope(); finally(own.close)
      local srv, port = own(helpers.server())
      local py = python([[
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
s.sendall(b"HEAD\r\nbody line 1\nbody line 2\n\0tail without newline")  # rest: 45 bytes
s.shutdown(socket.SHUT_WR)
report("reply", recv_all(s))
s.close()
print("END")
]], port)
      own(py)
      local c = own(assert(srv:accept(10)))
      c:settimeout(10)
      assert.equal("HEAD", c:read("l"))
      local rest = c:read("a")
      assert.equal("body line 1\nbody line 2\n\0tail without newline", rest)
      assert.equal("", c:read("a"))
      assert.is_nil(c:read("l"))
      -- our sending side is still open
      assert.equal(c, c:write("got ", #rest, " bytes\n"))
      assert.equal(c, c:shutdown("w"))
      assert.same({ { "reply", "got 45 bytes\n" } }, reports(py))
      assert.same(all(true, "exit", 0), all(py:wait(10)))
    end)

    it("serves nc (netcat), which shuts down its sending side at EOF", function()
      local own = helpers.scope(); finally(own.close)
      if helpers.execute("command -v nc >/dev/null 2>&1") ~= true
        or helpers.execute("nc -h 2>&1 | grep -q -- '-N'") ~= true then
        pending("no OpenBSD nc with -N on this machine")
      end
      local srv, port = own(helpers.server())
      local input = writefile("one\ntwo\r\nthree")
      own(function() os.remove(input) end)
      local nc = own(helpers.spawn_process(
        ("nc -N 127.0.0.1 %d < %s 2>&1"):format(port, helpers.shquote(input))))
      local c = own(assert(srv:accept(10)))
      c:settimeout(10)
      local got = {}
      for _ = 1, 10 do
        local line = c:read("l")
        if line == nil then break end
        got[#got + 1] = line
        c:write(line:upper(), "\n")
      end
      assert.same({ "one", "two", "three" }, got)
      c:write("end\n")
      assert.is_true(c:close())
      assert.equal("ONE\nTWO\nTHREE\nend\n", nc:read("a"))
      assert.same(all(true, "exit", 0), all(nc:wait(10)))
    end)
  end)

  describe("a duplex client", function()
    -- A line server: greets, answers ECHO/UPPER/QUIT, reports what it got.
    local PY_LINE_SERVER = [[
family = socket.AF_INET6 if sys.argv[1] == "::1" else socket.AF_INET
srv = socket.socket(family)
srv.bind((sys.argv[1], 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
srv.settimeout(20)
s, _ = srv.accept()
s.settimeout(20)
f = s.makefile("rb")
s.sendall(b"220 ready\r\n")
while True:
    line = f.readline()
    report("got", line)
    if not line:
        break
    cmd, _, arg = line.rstrip(b"\r\n").partition(b" ")
    if cmd == b"ECHO":
        s.sendall(arg + b"\r\n")
    elif cmd == b"UPPER":
        s.sendall(arg.upper() + b"\r\n")
    elif cmd == b"QUIT":
        s.sendall(b"221 bye\r\n")
        break
f.close(); s.close(); srv.close()
print("END")
]]

    local function talk(host)
      local own = helpers.scope(); finally(own.close)
      local py = own(python(PY_LINE_SERVER, host))
      local port = assert(helpers.tointeger(tonumber(py:read("l"))), "python gave no port")
      local c = own(assert(duplex.connect(host, port, { timeout = 10 })))
      c:settimeout(10)
      assert.same(all(host, port, host == "::1" and "inet6" or "inet"), all(c:getpeername()))
      assert.equal("220 ready", c:read("l"))
      assert.equal(c, c:write("ECHO ", 42, " ", 1.5, "\r\n"))
      assert.equal("42 1.5\r\n", c:read("L"))
      assert.equal(c, c:write("UPPER mixed Case\r\n", "ECHO \0nul\r\n"))
      assert.same(all("MIXED CASE", "\0nul"), all(c:read("l", "l")))
      assert.equal(c, c:write("QUIT\r\n"))
      assert.equal("221 bye", c:read("l"))
      assert.is_nil(c:read("l"))
      assert.same({
        { "got", "ECHO 42 1.5\r\n" },
        { "got", "UPPER mixed Case\r\n" },
        { "got", "ECHO \0nul\r\n" },
        { "got", "QUIT\r\n" },
      }, reports(py))
      assert.same(all(true, "exit", 0), all(py:wait(10)))
    end

    it("talks a CRLF line protocol with a python server (IPv4)", function()
      talk("127.0.0.1")
    end)

    it("talks a CRLF line protocol with a python server (IPv6)", function()
      if not HAS_V6 then pending("no IPv6 on this machine") end
      talk("::1")
    end)

    it("reads the rest with read('a') after the python server's shutdown(SHUT_WR), and still writes", function()
      local own = helpers.scope(); finally(own.close)
      local py = python([[
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
srv.settimeout(20)
s, _ = srv.accept()
s.settimeout(20)
s.sendall(b"line1\nrest of\nthe data")
s.shutdown(socket.SHUT_WR)
report("got", recv_all(s))
s.close(); srv.close()
print("END")
]])
      own(py)
      local port = assert(helpers.tointeger(tonumber(py:read("l"))), "python gave no port")
      local c = own(assert(duplex.connect("127.0.0.1", port, { timeout = 10 })))
      c:settimeout(10)
      assert.equal("line1", c:read("l"))
      assert.equal("rest of\nthe data", c:read("a"))
      assert.equal("", c:read("a"))
      assert.is_nil(c:read("l"))
      assert.is_nil(c:read(1))
      assert.is_nil(c:readsome())
      assert.equal(c, c:write("still can write\n"))
      assert.equal(c, c:write("after EOF\n"))
      assert.equal(c, c:shutdown("w"))
      assert.same({ { "got", "still can write\nafter EOF\n" } }, reports(py))
      assert.same(all(true, "exit", 0), all(py:wait(10)))
    end)

    it("half-closes with shutdown('w'): the python server sees EOF and answers", function()
      local own = helpers.scope(); finally(own.close)
      local py = python([[
import hashlib
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
srv.settimeout(20)
s, _ = srv.accept()
s.settimeout(20)
data = recv_all(s)
s.sendall(b"%d %s" % (len(data), hashlib.sha256(data).hexdigest().encode()))
s.close(); srv.close()
print("END")
]])
      own(py)
      local port = assert(helpers.tointeger(tonumber(py:read("l"))), "python gave no port")
      local c = own(assert(duplex.connect("127.0.0.1", port, { timeout = 10 })))
      c:settimeout(10)
      assert.equal(c, c:write("hello\n", "more\n"))
      assert.equal(c, c:shutdown("w"))
      -- 11 bytes, and `printf 'hello\nmore\n' | sha256sum`
      assert.equal("11 6052eef1a76d3ff777269e8a1720524953b74c4d96e4689679c8982699a32beb",
        c:read("a"))
      assert.same({}, reports(py))
      assert.same(all(true, "exit", 0), all(py:wait(10)))
    end)
  end)

  describe("Unix domain sockets", function()
    local PY_UNIX_CLIENT = [[
addr = sys.argv[1]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(addr)
s.sendall(b"ping\n")
s.shutdown(socket.SHUT_WR)
report("got", recv_all(s))
s.close()
print("END")
]]

    local PY_UNIX_SERVER = [[
addr = sys.argv[1]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
srv = socket.socket(socket.AF_UNIX)
srv.bind(addr)
srv.listen(1)
print("ready", flush=True)
srv.settimeout(20)
s, _ = srv.accept()
s.settimeout(20)
s.sendall(b"hello from python\n")
report("got", recv_all(s))
s.close(); srv.close()
if not addr.startswith("\0"):
    os.unlink(addr)
print("END")
]]

    local function serve_python(own, addr)
      local srv = own(assert(duplex.listen("unix:" .. addr)))
      local py = own(python(PY_UNIX_CLIENT, addr))
      local c = own(assert(srv:accept(10)))
      c:settimeout(10)
      assert.equal("ping\n", c:read("a"))
      c:write("pong\n")
      c:close()
      assert.same({ { "got", "pong\n" } }, reports(py))
      assert.same(all(true, "exit", 0), all(py:wait(10)))
    end

    local function connect_python(own, addr)
      local py = own(python(PY_UNIX_SERVER, addr))
      assert.equal("ready", py:read("l"))
      local c = own(assert(duplex.connect("unix:" .. addr, nil, { timeout = 10 })))
      c:settimeout(10)
      assert.same(all(addr, nil, "unix"), all(c:getpeername()))
      assert.equal("hello from python", c:read("l"))
      c:write("hi from duplex\n")
      c:shutdown("w")
      assert.same({ { "got", "hi from duplex\n" } }, reports(py))
      assert.is_nil(c:read("l"))
      assert.same(all(true, "exit", 0), all(py:wait(10)))
    end

    it("a python client reaches a duplex server on unix:/path", function()
      local own = helpers.scope(); finally(own.close)
      local path = helpers.tmpname()
      own(function() os.remove(path) end)
      serve_python(own, path)
    end)

    it("a duplex client reaches a python server on unix:/path", function()
      local own = helpers.scope(); finally(own.close)
      local path = helpers.tmpname()
      own(function() os.remove(path) end)
      connect_python(own, path)
    end)

    -- The abstract name is the bytes after "@", without padding: python
    -- binds and connects with the exact length, so both must agree.
    it("a python client reaches a duplex server on unix:@name", function()
      local own = helpers.scope(); finally(own.close)
      serve_python(own, ("@duplex-interop-%d"):format(math.random(1, 2 ^ 30)))
    end)

    it("a duplex client reaches a python server on unix:@name", function()
      local own = helpers.scope(); finally(own.close)
      connect_python(own, ("@duplex-interop-%d"):format(math.random(1, 2 ^ 30)))
    end)
  end)
end)
