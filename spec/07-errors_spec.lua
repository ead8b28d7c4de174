-- spec/07-errors_spec.lua: I/O failures come back as nil, message, code
-- (write adds the bytes already written), with the portable errno name as
-- code: ECONNREFUSED, EADDRINUSE, ETIMEDOUT, EAGAIN, EMSGSIZE, ECONNRESET,
-- EPIPE, EMFILE, ENOSPC (epoll refusing a registration). Also: nothing
-- received is lost on failure, and SIGPIPE never kills the process. Peers
-- that must act concurrently are child processes.

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

local function all(...) return pack(...) end

local function writefile(content)
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:write(content)
  f:close()
  return name
end

-- A python3 child running code with args (strings, passed on the command
-- line); its stdout and stderr come back through proc:read. The script
-- kills itself after 60 s; py:close() (`local py = own(python(...))`) kills
-- it (by pid) and removes the script.
local PY_PROLOGUE = "import os, signal, socket, struct, sys, time\nsignal.alarm(60)\n"
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

-- Command prefix for a child Lua that requires duplex from this checkout;
-- `env` execs the interpreter, so the pid stays the child's own.
local LUA = helpers.lua

-- Run a Lua script in a child process (cmd_prefix may set limits); returns
-- its whole output and how it ended.
local function run_lua(code, wrapper)
  local script = writefile(code)
  local cmd = LUA .. " " .. script .. " 2>&1"
  if wrapper then cmd = wrapper(cmd) end
  local proc = helpers.spawn_process(cmd)
  local r = pack(pcall(function()
    local out = {}
    for _ = 1, 1000 do
      local line = proc:read("L")
      if not line then break end
      out[#out + 1] = line
    end
    local ok, how, code_ = proc:wait(30)
    return table.concat(out), ok, how, code_
  end))
  proc:close()
  os.remove(script)
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

local function is_reset(code)
  return code == "EPIPE" or code == "ECONNRESET"
end

describe("errors", function()
  helpers.track_fds()

  describe("ECONNREFUSED", function()
    it("connect to a closed port: nil, 'connect 127.0.0.1:PORT: ...', 'ECONNREFUSED'", function()
      local srv, port = helpers.server()
      assert.is_true(srv:close())
      local c, msg, code = duplex.connect("127.0.0.1", port, { timeout = 5 })
      assert.is_nil(c)
      assert.equal("ECONNREFUSED", code)
      assert.equal("string", type(msg))
      local prefix = ("connect 127.0.0.1:%d: "):format(port)
      assert.equal(prefix, msg:sub(1, #prefix))
      assert.equal(prefix .. "Connection refused", msg)
    end)

    it("is the same without a timeout (wait forever)", function()
      local srv, port = helpers.server()
      srv:close()
      local c, msg, code = duplex.connect("127.0.0.1", port)
      assert.is_nil(c)
      assert.equal(("connect 127.0.0.1:%d: Connection refused"):format(port), msg)
      assert.equal("ECONNREFUSED", code)
    end)
  end)

  describe("EADDRINUSE", function()
    it("listen on a port that is listened on", function()
      local own = helpers.scope(); finally(own.close)
      local srv, port = own(helpers.server())
      local s2, msg, code = duplex.listen("127.0.0.1", port)
      assert.is_nil(s2)
      assert.equal("EADDRINUSE", code)
      assert.equal("string", type(msg))
      -- "<op> 127.0.0.1:PORT: <strerror>"
      assert.matches("^%l+ 127%.0%.0%.1:" .. port .. ": Address already in use$", msg)
    end)

    it("listen with reuseaddr = false", function()
      local own = helpers.scope(); finally(own.close)
      local srv, port = own(helpers.server({ reuseaddr = false }))
      local s2, msg, code = duplex.listen("127.0.0.1", port, { reuseaddr = false })
      assert.is_nil(s2)
      assert.equal("string", type(msg))
      assert.equal("EADDRINUSE", code)
    end)

    it("connect with opts.bind on a port that is listened on", function()
      local own = helpers.scope(); finally(own.close)
      local srv, port = own(helpers.server())
      local c, msg, code = duplex.connect("127.0.0.1", port,
        { timeout = 5, bind = { "127.0.0.1", port } })
      assert.is_nil(c)
      assert.equal("string", type(msg))
      assert.equal("EADDRINUSE", code)
    end)
  end)

  describe("ETIMEDOUT and EAGAIN", function()
    -- A loopback connect completes at once, so a connect can only time out
    -- against a full listen queue: Linux drops the SYN of a connection the
    -- queue cannot hold, and the client waits for a retransmission (1 s).
    it("connect to a server whose listen queue is full", function()
      local own = helpers.scope(); finally(own.close)
      local srv, port = own(helpers.server({ backlog = 1 }))
      local held = {}
      own(function()
        for _, c in ipairs(held) do c:close() end
      end)
      local c, msg, code, elapsed
      for _ = 1, 16 do
        local t0 = duplex.now()
        c, msg, code = duplex.connect("127.0.0.1", port, { timeout = 0.3 })
        elapsed = duplex.now() - t0
        if not c then break end
        held[#held + 1] = c
      end
      assert.is_nil(c)
      assert.equal("ETIMEDOUT", code)
      assert.equal("string", type(msg))
      local prefix = ("connect 127.0.0.1:%d: "):format(port)
      assert.equal(prefix, msg:sub(1, #prefix))
      assert.is_true(elapsed >= 0.25, "waited " .. elapsed)
      assert.is_true(elapsed < 2, "waited " .. elapsed)
      assert.is_true(#held >= 1)

      -- timeout 0 never waits
      local t0 = duplex.now()
      local c0, msg0, code0 = duplex.connect("127.0.0.1", port, { timeout = 0 })
      local e0 = duplex.now() - t0
      if c0 then c0:close() end
      assert.is_nil(c0)
      assert.equal("string", type(msg0))
      assert.equal("EAGAIN", code0)
      assert.is_true(e0 < 1, "waited " .. e0)      -- a wait would last until the SYN's retry (1 s)
    end)

    it("read: ETIMEDOUT after the deadline, and the partial line stays buffered", function()
      local own = helpers.scope(); finally(own.close)
      local c, p, srv = helpers.pair()
      own(function() helpers.close(c, p, srv) end)
      assert.equal(p, p:write("partial"))
      c:settimeout(0.2)
      local t0 = duplex.now()
      local r, msg, code = c:read("l")
      local elapsed = duplex.now() - t0
      assert.is_nil(r)
      assert.equal("string", type(msg))
      assert.equal("ETIMEDOUT", code)
      assert.is_true(elapsed >= 0.15 and elapsed < 2, "waited " .. elapsed)

      assert.equal(p, p:write("rest\n"))
      c:settimeout(5)
      assert.equal("partialrest", c:read("l"))
    end)

    it("read with timeout 0: EAGAIN at once, nothing lost", function()
      local own = helpers.scope(); finally(own.close)
      local c, p, srv = helpers.pair()
      own(function() helpers.close(c, p, srv) end)
      c:settimeout(0)
      local t0 = duplex.now()
      local r, msg, code = c:read("l")
      assert.is_true(duplex.now() - t0 < 1)      -- a wait would last for ever: nothing comes
      assert.is_nil(r)
      assert.equal("string", type(msg))
      assert.equal("EAGAIN", code)

      p:write("ab")
      c:settimeout(5)
      assert.equal("a", c:read(1))
      c:settimeout(0)
      r, msg, code = c:read(2)
      assert.is_nil(r)
      assert.equal("EAGAIN", code)
      p:write("c")
      c:settimeout(5)
      assert.equal("bc", c:read(2))
    end)

    it("readsome: ETIMEDOUT", function()
      local own = helpers.scope(); finally(own.close)
      local c, p, srv = helpers.pair()
      own(function() helpers.close(c, p, srv) end)
      c:settimeout(0.1)
      local r, msg, code = c:readsome()
      assert.is_nil(r)
      assert.equal("string", type(msg))
      assert.equal("ETIMEDOUT", code)
    end)

    it("accept: ETIMEDOUT with a timeout, EAGAIN with 0", function()
      local own = helpers.scope(); finally(own.close)
      local srv = own(helpers.server())
      local t0 = duplex.now()
      local r, msg, code = srv:accept(0.2)
      local elapsed = duplex.now() - t0
      assert.is_nil(r)
      assert.equal("string", type(msg))
      assert.equal("ETIMEDOUT", code)
      assert.is_true(elapsed >= 0.15 and elapsed < 2, "waited " .. elapsed)

      srv:settimeout(0.1)
      r, msg, code = srv:accept()
      assert.is_nil(r)
      assert.equal("string", type(msg))
      assert.equal("ETIMEDOUT", code)

      r, msg, code = srv:accept(0)
      assert.is_nil(r)
      assert.equal("string", type(msg))
      assert.equal("EAGAIN", code)
    end)
  end)

  describe("EMSGSIZE", function()
    it("a line over maxline fails at once and stays buffered", function()
      local own = helpers.scope(); finally(own.close)
      local c, p, srv = helpers.pair()
      own(function() helpers.close(c, p, srv) end)
      assert.equal(c, c:setoption("maxline", 16))
      assert.equal(16, c:getoption("maxline"))
      local long = string.rep("0123456789", 4)        -- 40 bytes, no newline yet
      p:write(long)
      c:settimeout(2)
      local t0 = duplex.now()
      local r, msg, code = c:read("l")
      local elapsed = duplex.now() - t0
      assert.is_nil(r)
      assert.equal("string", type(msg))
      assert.equal("EMSGSIZE", code)
      assert.is_true(elapsed < 1, "EMSGSIZE must not wait for the newline; waited " .. elapsed)

      -- the newline arrives: still too long
      p:write("\nshort\n")
      r, msg, code = c:read("L")
      assert.is_nil(r)
      assert.equal("EMSGSIZE", code)

      -- raising maxline returns the line whole, then the rest as usual
      c:setoption("maxline", 1024)
      assert.equal(long, c:read("l"))
      c:setoption("maxline", 16)
      assert.equal("short", c:read("l"))
    end)

    it("readuntil over max: EMSGSIZE, data kept", function()
      local own = helpers.scope(); finally(own.close)
      local c, p, srv = helpers.pair()
      own(function() helpers.close(c, p, srv) end)
      local head = string.rep("h", 40)
      p:write(head)
      local r, msg, code = c:readuntil("\r\n\r\n", 16)
      assert.is_nil(r)
      assert.equal("string", type(msg))
      assert.equal("EMSGSIZE", code)
      p:write("\r\n\r\nbody")
      assert.equal(head, c:readuntil("\r\n\r\n", 1024))
      assert.equal("body", c:read(4))
    end)

    it("memory stays bounded: a reader over maxline stops taking data", function()
      local own = helpers.scope(); finally(own.close)
      -- If the reader kept every byte, the writer could push all 64 MiB
      -- through; with a bounded buffer the socket buffers fill and the
      -- writer gets EAGAIN with the 4th value counting what went out.
      local c, p, srv = helpers.pair()
      own(function() helpers.close(c, p, srv) end)
      c:setoption("maxline", 1024)
      c:settimeout(0)
      p:settimeout(0)
      local chunk = string.rep("x", 65536)
      local total, stalls = 0, 0
      for _ = 1, 1024 do
        local r, msg, code, n = p:write(chunk)
        if r then
          assert.equal(p, r)
          total = total + #chunk
          stalls = 0
        else
          assert.equal("string", type(msg))
          assert.equal("EAGAIN", code)
          assert.equal("integer", helpers.mathtype(n))
          assert.is_true(n >= 0 and n < #chunk)
          total = total + n
          stalls = stalls + 1
          if stalls >= 3 then break end
        end
        local l, _, lcode = c:read("l")
        assert.is_nil(l)
        assert.is_true(lcode == "EMSGSIZE" or lcode == "EAGAIN", tostring(lcode))
      end
      assert.equal(3, stalls)
      assert.is_true(total < 32 * 1024 * 1024, total .. " bytes taken")
      local l, _, lcode = c:read("l")
      assert.is_nil(l)
      assert.equal("EMSGSIZE", lcode)
    end)
  end)

  describe("ECONNRESET and EPIPE", function()
    it("a duplex peer with linger 0 resets mid-stream", function()
      local own = helpers.scope(); finally(own.close)
      local c, p, srv = helpers.pair()
      own(function() helpers.close(c, p, srv) end)
      p:write("hello\n")
      assert.equal("hello", c:read("l"))
      assert.equal(p, p:setoption("linger", 0))
      assert.equal(0, p:getoption("linger"))
      assert.is_true(p:close())

      local r, msg, code = c:read("l")
      assert.is_nil(r)
      assert.equal("string", type(msg))
      assert.equal("ECONNRESET", code)

      local w, wmsg, wcode, n = c:write("after reset\n")
      assert.is_nil(w)
      assert.equal("string", type(wmsg))
      assert.is_true(is_reset(wcode), tostring(wcode))
      assert.equal("integer", helpers.mathtype(n))
      assert.equal(0, n)
    end)

    it("write first after a reset: EPIPE or ECONNRESET, then EPIPE", function()
      local own = helpers.scope(); finally(own.close)
      local c, p, srv = helpers.pair()
      own(function() helpers.close(c, p, srv) end)
      p:setoption("linger", 0)
      p:close()
      local w, msg, code, n = c:write("x")
      assert.is_nil(w)
      assert.equal("string", type(msg))
      assert.is_true(is_reset(code), tostring(code))
      assert.same(all(0), all(n))
      w, msg, code, n = c:write("y", "z")
      assert.is_nil(w)
      assert.equal("string", type(msg))
      assert.is_true(is_reset(code), tostring(code))
      assert.equal(0, n)
    end)

    it("a python peer with SO_LINGER 0 resets: read gets ECONNRESET", function()
      local own = helpers.scope(); finally(own.close)
      local srv, port = own(helpers.server())
      local py = python([[
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
s.sendall(b"hello\n")
f = s.makefile("rb")
assert f.readline() == b"go\n"
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print("reset")
]], port)
      own(py)
      local c = own(assert(srv:accept(10)))
      c:settimeout(10)
      assert.equal("hello", c:read("l"))
      c:write("go\n")
      assert.equal("reset", py:read("l"))
      local r, msg, code = c:read("l")
      assert.is_nil(r)
      assert.equal("string", type(msg))
      assert.equal("ECONNRESET", code)
      local w, wmsg, wcode, n = c:write("x")
      assert.is_nil(w)
      assert.equal("string", type(wmsg))
      assert.is_true(is_reset(wcode), tostring(wcode))
      assert.equal(0, n)
      assert.same(all(true, "exit", 0), all(py:wait(10)))
    end)

    it("a reset during a large write: the 4th value counts the bytes sent", function()
      local own = helpers.scope(); finally(own.close)
      local srv, port = own(helpers.server())
      local MiB = 1024 * 1024
      local py = python([[
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
got = 0
while got < 1024 * 1024:
    b = s.recv(min(65536, 1024 * 1024 - got))
    if not b: break
    got += len(b)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print("reset", got)
]], port)
      own(py)
      local c = own(assert(srv:accept(10)))
      c:settimeout(20)
      local data = string.rep("d", 32 * MiB)
      local w, msg, code, n = c:write(data)
      assert.equal(("reset %d"):format(MiB), py:read("l"))
      assert.is_nil(w)
      assert.equal("string", type(msg))
      assert.is_true(is_reset(code), tostring(code))
      assert.equal("integer", helpers.mathtype(n))
      assert.is_true(n >= MiB and n < #data, "nwritten " .. tostring(n))
    end)
  end)

  describe("SIGPIPE", function()
    it("writing to a closed peer does not kill this process", function()
      local own = helpers.scope(); finally(own.close)
      local c, p, srv = helpers.pair()
      own(function() helpers.close(c, p, srv) end)
      p:close()
      local chunk = string.rep("s", 65536)
      local codes = {}
      for _ = 1, 50 do
        local w, msg, code, n = c:write(chunk)
        if not w then
          assert.equal("string", type(msg))
          assert.is_true(is_reset(code), tostring(code))
          assert.equal("integer", helpers.mathtype(n))
          codes[#codes + 1] = code
        end
      end
      assert.is_true(#codes >= 1)
      assert.equal("EPIPE", codes[#codes])
    end)

    it("a child with SIGPIPE at its default action survives, and no handler is installed", function()
      local script = [[
local function sigpipe(field)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. field .. ":%s*(%x+)")
    if v then return math.floor(tonumber(v:sub(-4), 16) / 4096) % 2 end   -- bit 12
  end
end
print("ignored-before", sigpipe("SigIgn"), "caught-before", sigpipe("SigCgt"))
local duplex = require "duplex"
local srv = assert(duplex.listen("127.0.0.1", 0))
local _, port = srv:getsockname()
local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
local p = assert(srv:accept(5))
p:close()
local chunk = string.rep("s", 65536)
local fails, last = 0, nil
for _ = 1, 200 do
  local w, _, code = c:write(chunk)
  if not w then fails = fails + 1; last = code end
end
print("alive", fails, last)
print("ignored-after", sigpipe("SigIgn"), "caught-after", sigpipe("SigCgt"))
c:close(); srv:close()
]]
      -- python resets SIGPIPE to its default action, then execs the child
      local out, ok, how, code = run_lua(script, function(cmd)
        return [==[python3 -c 'import os, signal, sys; signal.signal(signal.SIGPIPE, signal.SIG_DFL); os.execvp("sh", ["sh", "-c", sys.argv[1]])' ]==]
          .. helpers.shquote("exec " .. cmd)
      end)
      assert.same(all(true, "exit", 0), all(ok, how, code), out)
      assert.matches("ignored%-before\t0\tcaught%-before\t0\n", out)
      assert.matches("alive\t%d+\tEPIPE\n", out)
      local fails = tonumber(out:match("alive\t(%d+)"))
      assert.is_true(fails >= 190, out)
      assert.matches("ignored%-after\t0\tcaught%-after\t0\n", out)
    end)
  end)

  describe("EMFILE", function()
    it("listen and accept past the descriptor limit: nil, msg, 'EMFILE'", function()
      local script = [[
local duplex = require "duplex"
local held, code, msg = {}, nil, nil
for _ = 1, 64 do
  local s, m, c = duplex.listen("127.0.0.1", 0)
  if not s then msg, code = m, c; break end
  held[#held + 1] = s
end
print("listen", code, #held > 0, type(msg))
-- free two descriptors: one for a client, none left for accept
held[#held]:close(); held[#held] = nil
local srv = held[#held]
local _, port = srv:getsockname()
local c, m2, c2 = duplex.connect("127.0.0.1", port, { timeout = 5 })
print("connect", c ~= nil, c2)
local a, am, ac = srv:accept(1)
print("accept", a, ac, type(am))
-- after closing one, accept succeeds: the pending connection was not lost
held[1]:close(); table.remove(held, 1)
a = srv:accept(5)
print("accept-again", duplex.type(a))
if a then a:close() end
if c then c:close() end
for _, s in ipairs(held) do s:close() end
print("done")
]]
      local out, ok, how, code = run_lua(script, function(cmd)
        return "sh -c " .. helpers.shquote("ulimit -n 24 && exec " .. cmd)
      end)
      assert.same(all(true, "exit", 0), all(ok, how, code), out)
      assert.matches("listen\tEMFILE\ttrue\tstring\n", out, 1, true)
      assert.matches("connect\ttrue\tnil\n", out, 1, true)
      assert.matches("accept\tnil\tEMFILE\tstring\n", out, 1, true)
      assert.matches("accept-again\tclient\n", out, 1, true)
      assert.matches("done\n", out, 1, true)
    end)
  end)

  describe("ENOSPC", function()
    -- spec/shim/epollfail.c refuses new epoll registrations (as epoll does
    -- once max_user_watches is reached) while a flag file exists
    it("a wait epoll will not register: nil, msg, 'ENOSPC'; nothing is lost and the next call works", function()
      local own = helpers.scope(); finally(own.close)
      local ch = require "spec.child_helpers"
      local so = assert(ch.shim("epollfail"))
      local flag = os.tmpname()
      own(function() os.remove(flag) end)
      local r = ch.run([[
local out = {}
duplex.run(function()
  if not uses_epoll() then out.backend = "poll"; return end
  local srv = assert(duplex.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local c = assert(duplex.connect("127.0.0.1", port, { timeout = 5 }))
  local p = assert(srv:accept(5))                  -- registered before the shortage
  assert(p:write("one\ntw"))
  out.first = { c:read("l") }                      -- no wait needed
  out.read = pack(c:read("l"))                     -- "tw" and a wait: refused
  out.accept = pack(srv:accept(1))
  out.sleep = duplex.sleep(0.01)                   -- timers need no registration
  os.remove(os.getenv("EPOLLFAIL_FLAG"))
  assert(p:write("o\n"))
  out.after = { c:read("l") }                      -- "tw" was kept
  c:close(); p:close(); srv:close()
end)
emit(out)
]], { EPOLLFAIL_FLAG = flag }, 30, { preload = so })
      if r.backend == "poll" then pending("the poll build registers nothing with epoll") end
      assert.same({ "one" }, r.first)
      assert.equal(3, r.read.n)
      assert.same({ nil, "ENOSPC" }, { r.read[1], r.read[3] })
      assert.matches("^read 127%.0%.0%.1:%d+: No space left on device$", r.read[2])
      assert.equal(3, r.accept.n)
      assert.same({ nil, "ENOSPC" }, { r.accept[1], r.accept[3] })
      assert.matches("^accept 127%.0%.0%.1:%d+: No space left on device$", r.accept[2])
      assert.is_true(r.sleep)
      assert.same({ "two" }, r.after)
    end)
  end)
end)
