-- Timeouts: 0 never waits (EAGAIN), a number is a deadline for the whole
-- call (ETIMEDOUT), nil waits; nothing is lost when a call times out.
-- Peers that must act while this process is blocked run as python3 children.

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

local function pair()
  local c, p, srv = helpers.pair()
  finally(function() helpers.close(c, p, srv) end)
  return c, p
end

local has_python = helpers.execute("command -v python3 >/dev/null 2>&1") == true

-- Start a python3 peer that connects to 127.0.0.1:port and runs body;
-- `s` is its connected socket. Returns the process (closed at test end).
local function python_peer(port, body)
  local script = table.concat({
    "import socket, sys, time",
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))",
    "s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)",
    body,
  }, "\n")
  local proc = helpers.spawn_process("python3 -c " .. helpers.shquote(script)
    .. " " .. port)
  finally(function() proc:close() end)
  return proc
end

describe("timeout 0", function()
  helpers.track_fds()

  it("makes every read return nil, msg, 'EAGAIN' at once when no data is there", function()
    local _, p = pair()
    assert.equal(p, p:settimeout(0))
    local calls = {
      { "read l", function() return p:read("l") end },
      { "read a", function() return p:read("a") end },
      { "read 1", function() return p:read(1) end },
      { "readuntil", function() return p:readuntil("\n") end },
      { "readsome", function() return p:readsome() end },
    }
    for _, call in ipairs(calls) do
      local elapsed, r, msg, code = helpers.timed(call[2])
      assert.is_nil(r, call[1])
      assert.equal("EAGAIN", code, call[1])
      assert.is_string(msg, call[1])
      assert.is_true(elapsed < 0.5, call[1] .. " waited " .. elapsed)
    end
    local r, msg = p:read("l")
    assert.is_nil(r)
    assert.matches("read", msg, 1, true)
  end)

  it("still returns data that is already buffered", function()
    local c, p = pair()
    assert(c:write("a\nb\n"))
    assert.equal("a", p:read("l"))  -- waits (timeout 5) for the data
    p:settimeout(0)
    assert.equal("b", p:read("l"))
    local r, _, code = p:read("l")
    assert.is_nil(r)
    assert.equal("EAGAIN", code)
  end)
end)

describe("a read timeout", function()
  helpers.track_fds()

  it("fails with ETIMEDOUT on a partial line and loses nothing", function()
    local c, p = pair()
    assert(c:write("first half, "))
    assert.equal(p, p:settimeout(0.1))
    local elapsed, r, msg, code = helpers.timed(function() return p:read("l") end)
    assert.is_nil(r)
    assert.equal("ETIMEDOUT", code)
    assert.is_string(msg)
    assert.matches("read", msg, 1, true)
    assert.is_true(elapsed >= 0.09, "returned early: " .. elapsed)
    assert.is_true(elapsed < 1, "returned late: " .. elapsed)
    -- a second timeout keeps it too
    r, msg, code = p:read("l")
    assert.is_nil(r)
    assert.equal("ETIMEDOUT", code)
    assert(c:write("second half\nnext\n"))
    assert.equal("first half, second half", p:read("l"))
    assert.equal("next", p:read("l"))
  end)

  it("applies to readuntil and readsome, keeping the data", function()
    local c, p = pair()
    assert(c:write("no delimiter yet"))
    p:settimeout(0.05)
    local r, msg, code = p:readuntil("\r\n")
    assert.is_nil(r)
    assert.equal("ETIMEDOUT", code)
    assert.is_string(msg)
    assert.equal("no delimiter yet", p:readsome(100) .. (p:readsome(100) or ""))
    r, msg, code = p:readsome(100)
    assert.is_nil(r)
    assert.equal("ETIMEDOUT", code)
    assert.is_string(msg)
  end)

  it("makes a multi-format read atomic: a timeout consumes nothing", function()
    local c, p = pair()
    assert(c:write("abc\n12"))
    p:settimeout(0.1)
    local a, b, code = p:read("l", 5)
    assert.is_nil(a)
    assert.equal("ETIMEDOUT", code)
    assert.is_string(b)
    assert(c:write("345"))
    p:settimeout(5)
    assert.equal("abc", p:read("l"))
    assert.equal("12345", p:read(5))
  end)

  it("is a deadline for the whole call, however the bytes trickle in", function()
    if not has_python then
      pending("python3 is needed for a trickling peer")
      return
    end
    local srv, port = helpers.server()
    finally(function() srv:close() end)
    -- the peer sends one byte every 30 ms for up to 3 s, never a newline
    local proc = python_peer(port, [[
for _ in range(100):
    s.sendall(b"a")
    time.sleep(0.03)
s.close()
]])
    local p = assert(srv:accept(5))
    finally(function() p:close() end)
    p:settimeout(0.1)
    local elapsed, r, msg, code = helpers.timed(function() return p:read("l") end)
    assert.is_nil(r)
    assert.equal("ETIMEDOUT", code)
    assert.matches("read", msg, 1, true)
    assert.is_true(elapsed >= 0.09, "returned early: " .. elapsed)
    assert.is_true(elapsed < 1, "returned late: " .. elapsed)
    -- nothing was lost: what trickled in is all still there
    proc:close()
    p:settimeout(5)
    local rest = p:read("a")
    assert.is_string(rest)
    assert.matches("^a+$", rest)
    assert.is_true(#rest >= 2, "only " .. #rest .. " bytes")
  end)

  it("nil waits as long as it takes", function()
    if not has_python then
      pending("python3 is needed for a late peer")
      return
    end
    local srv, port = helpers.server()
    finally(function() srv:close() end)
    -- the peer writes after 0.3 s, then waits for us to close
    local proc = python_peer(port, [[
time.sleep(0.3)
s.sendall(b"late\n")
s.settimeout(5)
try:
    s.recv(1)
except Exception:
    pass
s.close()
]])
    local p = assert(srv:accept(5))
    finally(function() p:close() end)
    assert.equal(p, p:settimeout(nil))
    local elapsed, line = helpers.timed(function() return p:read("l") end)
    assert.equal("late", line)
    assert.is_true(elapsed >= 0.15, "did not wait: " .. elapsed)
    p:close()
    local ok, how, status = proc:wait(5)
    assert.same({ true, "exit", 0 }, { ok, how, status })
  end)
end)

describe("a write timeout", function()
  helpers.track_fds()

  -- 4 MiB of numbered lines: far more than small socket buffers hold.
  local function big_data()
    local t = {}
    for i = 1, 512 * 1024 do t[i] = string.format("%07d\n", i) end
    return table.concat(t)
  end

  it("returns nil, msg, 'ETIMEDOUT', nwritten when the peer never reads", function()
    local c, p = pair()
    assert.equal(c, c:setoption("sndbuf", 4096))
    assert.equal(p, p:setoption("rcvbuf", 4096))
    local data = big_data()
    c:settimeout(0.1)
    local elapsed, r, msg, code, n = helpers.timed(function() return c:write(data) end)
    assert.is_nil(r)
    assert.equal("ETIMEDOUT", code)
    assert.is_string(msg)
    assert.matches("write", msg, 1, true)
    assert.equal("integer", helpers.mathtype(n))
    assert.is_true(n >= 0 and n < #data, "nwritten " .. tostring(n))
    assert.is_true(elapsed >= 0.09, "returned early: " .. elapsed)
    assert.is_true(elapsed < 1, "returned late: " .. elapsed)

    -- timeout 0 on a full socket: EAGAIN, nothing written
    c:settimeout(0)
    local r2, msg2, code2, n2 = c:write("more")
    assert.is_nil(r2)
    assert.equal("EAGAIN", code2)
    assert.is_string(msg2)
    assert.equal(0, n2)

    -- the peer receives exactly the first n bytes
    c:close()
    p:settimeout(5)
    local got = p:read("a")
    assert.equal(n, #got)
    assert.is_true(got == data:sub(1, n), "received bytes differ from the prefix")
  end)

  it("counts nwritten across several arguments", function()
    local c, p = pair()
    c:setoption("sndbuf", 4096)
    p:setoption("rcvbuf", 4096)
    local data = big_data()
    c:settimeout(0.1)
    local r, _, code, n = c:write("head:", data, ":tail")
    assert.is_nil(r)
    assert.equal("ETIMEDOUT", code)
    assert.equal("integer", helpers.mathtype(n))
    c:close()
    p:settimeout(5)
    local got = p:read("a")
    assert.equal(n, #got)
    assert.is_true(got == ("head:" .. data):sub(1, n), "received bytes differ from the prefix")
  end)
end)

describe("duplex.sleep and duplex.now", function()
  it("sleep waits about the given time and returns true", function()
    local elapsed, r = helpers.timed(function() return duplex.sleep(0.05) end)
    assert.is_true(r)
    assert.is_true(elapsed >= 0.045, "slept " .. elapsed)
    assert.is_true(elapsed < 1, "slept " .. elapsed)
  end)
end)

-- setoption("deadline", t): every call of the socket ends by the
-- duplex.now() time t, however many calls an exchange makes; each call
-- still has its own timeout, and the earlier of the two wins. A call takes
-- both when it starts: a change is for the next call.
describe("a socket's deadline", function()
  helpers.track_fds()

  local function read_failure(p, port)
    return { nil, ("read 127.0.0.1:%d: Connection timed out"):format(port), "ETIMEDOUT", n = 3 }
  end

  it("ends a waiting call at the deadline, whatever the timeout; buffered data still comes", function()
    local c, p = pair()
    local _, port = c:getsockname()
    p:settimeout(5)
    assert.equal(p, p:setoption("deadline", duplex.now() + 0.1))
    assert(c:write("one\ntwo\n"))
    local got = { p:read("l"), p:read("l") }          -- ready: no wait
    local elapsed, r = helpers.timed(function() return pack(p:read("l")) end)
    assert.same({ "one", "two" }, got)
    assert.same(read_failure(p, port), r)
    assert.is_true(elapsed < 3, "waited " .. elapsed)
    assert(c:write("three\n"))                        -- nothing was lost
    assert.equal(p, p:setoption("deadline", false))
    assert.equal("three", p:read("l"))
  end)

  it("a deadline that has passed fails every wait at once; getoption tells it", function()
    local c, p = pair()
    local _, port = c:getsockname()
    local at = duplex.now() - 1
    assert.equal(p, p:setoption("deadline", at))
    assert.equal(at, p:getoption("deadline"))
    local elapsed, r = helpers.timed(function() return pack(p:read("l")) end)
    assert.same(read_failure(p, port), r)
    assert.is_true(elapsed < 1, "waited " .. elapsed)
    assert.equal(p, p:setoption("deadline", 0))       -- 0 is long past too
    assert.same(read_failure(p, port), pack(p:read(1)))
    assert.equal(p, p:setoption("deadline", false))
    assert.is_false(p:getoption("deadline"))
  end)

  it("timeout 0 still never waits: EAGAIN", function()
    local _, p = pair()
    p:settimeout(0)
    assert.equal(p, p:setoption("deadline", duplex.now() + 10))
    local r = pack(p:read("l"))
    assert.same({ nil, r[2], "EAGAIN", n = 3 }, r)
  end)

  it("a call already waiting keeps the deadline it started with", function()
    local c, p = pair()
    p:settimeout(nil)
    local r = duplex.run(function()
      local reader = duplex.spawn(function() return pack(p:read("l")) end)
      helpers.until_waiting(reader, "read")             -- it waits now
      assert.equal(p, p:setoption("deadline", duplex.now() - 1))
      assert(c:write("late but wanted\n"))
      local _, got = reader:join(5)
      return { got = got, next = pack(p:read("l")) }
    end)
    assert.same({ "late but wanted", n = 1 }, r.got)
    assert.equal("ETIMEDOUT", r.next[3])               -- the next call has it
  end)

  it("bounds accept, datagram receives and forward too", function()
    local srv, port = helpers.server()
    local u = assert(duplex.udp("127.0.0.1", 0))
    local a, b, s1 = helpers.pair()
    local x, y, s2 = helpers.pair()
    finally(function() helpers.close(srv, u, a, b, s1, x, y, s2) end)
    assert.equal(srv, srv:setoption("deadline", duplex.now() - 1))
    assert.same({ nil, ("accept 127.0.0.1:%d: Connection timed out"):format(port), "ETIMEDOUT", n = 3 },
      pack(srv:accept()))
    local _, uport = u:getsockname()
    assert.equal(u, u:setoption("deadline", duplex.now() - 1))
    assert.same({ nil, ("recvfrom 127.0.0.1:%d: Connection timed out"):format(uport), "ETIMEDOUT", n = 3 },
      pack(u:recvfrom()))
    assert(a:write("moved before the deadline"))
    a:shutdown("w")
    assert.equal(b, b:setoption("deadline", duplex.now() - 1))
    local r = pack(b:forward(x, 25))             -- ready bytes move; no wait needed
    assert.same({ 25, n = 1 }, r)
    assert.equal("moved before the deadline", y:read(25))
    local _, xpeer = x:getpeername()
    local r2 = pack(x:forward(b))                -- into b; x has nothing: it must wait
    assert.same({ nil, ("forward 127.0.0.1:%d: Connection timed out"):format(xpeer), "ETIMEDOUT", 0, n = 4 }, r2)
  end)

  it("connect's deadline option bounds the connect and stays with the client", function()
    local srv, port = helpers.server()
    finally(function() srv:close() end)
    local at = duplex.now() + 0.1
    local c = assert(duplex.connect("127.0.0.1", port, { deadline = at, timeout = 5 }))
    local p = assert(srv:accept(5))
    finally(function() helpers.close(c, p, srv) end)
    assert.equal(at, c:getoption("deadline"))
    local r = pack(c:read("l"))                  -- the exchange's deadline, not 5 s
    assert.same({ nil, ("read 127.0.0.1:%d: Connection timed out"):format(port), "ETIMEDOUT", n = 3 }, r)
    assert.has_error(function() duplex.connect("127.0.0.1", port, { deadline = "soon" }) end,
      "bad argument #3 to 'connect' (option 'deadline': deadline must be a duplex.now() time or false)")
  end)

  it("rejects what is not a time", function()
    local _, p = pair()
    assert.has_error(function() p:setoption("deadline", -1) end,
      "bad argument #2 to 'setoption' (deadline must be a duplex.now() time or false)")
    assert.has_error(function() p:setoption("deadline", "soon") end)
    assert.has_error(function() p:setoption("deadline", true) end)
  end)
end)
